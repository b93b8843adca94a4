"""The energy-balance side of connectivity: each transformer's balance residual (its balance
meter's energy minus its members') with the loss model a + b E_bal^2 projected out, and what
moving a meter between transformers does to the unexplained sum of squares, vectorised."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


class Balance:
    """Energy balance residuals with the loss model a + b E_bal^2 projected out, and the cost
    change of moving meters between transformers, vectorised (see the module docstring).

    For transformer X with basis Q_X (T, 2) orthonormal over its valid intervals, the unexplained
    sum of squares of a residual r is SS(r) = |r|^2 - |Q_X' r|^2; moving meter j from A to B
    changes r_A by +e_j and r_B by -e_j, so the change is a few dot products."""

    def __init__(self, energy_wh: F64, tx_energy_wh: F64, tx_of: I64) -> None:
        """energy_wh (N, T) per meter, tx_energy_wh (X, T) per balance meter (NaN: missing),
        tx_of (N,) each meter's transformer index."""
        self.e = energy_wh
        self.bal = tx_energy_wh
        self.n_x, self.t = self.bal.shape
        self.tx_of = tx_of.copy()
        self.e0 = np.nan_to_num(self.e)
        self.recompute()

    def recompute(self) -> None:
        r = self.bal.copy()
        for x in range(self.n_x):
            m = np.flatnonzero(self.tx_of == x)
            if len(m):
                r[x] -= self.e[m].sum(axis=0)
        self.valid = np.isfinite(r)
        self.has = self.valid.sum(axis=1) >= 8
        self.q = np.zeros((self.n_x, self.t, 2))
        for x in np.flatnonzero(self.has).tolist():
            ok = self.valid[x]
            a = np.zeros((self.t, 2))
            a[ok, 0] = 1.0
            a[ok, 1] = self.bal[x, ok] ** 2
            q, _ = np.linalg.qr(a)
            self.q[x] = q
        self.r = np.where(self.valid, r, 0.0)
        self.u = self.r - np.einsum("xtk,xk->xt", self.q, np.einsum("xtk,xt->xk", self.q, self.r))
        self.ss = (self.u * self.r).sum(axis=1)

    def gains(self, rows: I64) -> F64:
        """(len(rows), X) relative gain of moving each meter from its transformer to each X."""
        e = self.e0[rows]
        a = self.tx_of[rows]
        out = np.full((len(rows), self.n_x), np.nan)
        # e masked to each transformer's valid intervals
        for x in np.flatnonzero(self.has).tolist():
            ex = e * self.valid[x]
            proj = ex @ self.q[x]  # (n, 2)
            eme = (ex * ex).sum(axis=1) - (proj * proj).sum(axis=1)
            eu = ex @ self.u[x]
            out[:, x] = eme - 2.0 * eu  # SS_B(r_B - e) - SS_B(r_B)
        # + SS_A(r_A + e) - SS_A(r_A) for the meter's own transformer
        own = np.full(len(rows), np.nan)
        for x in np.unique(a):
            sel = a == x
            if not self.has[x]:
                continue
            ex = e[sel] * self.valid[x]
            proj = ex @ self.q[x]
            own[sel] = (ex * ex).sum(axis=1) - (proj * proj).sum(axis=1) + 2.0 * (ex @ self.u[x])
        before = self.ss[a][:, None] + self.ss[None, :]
        with np.errstate(all="ignore"):
            g = -(own[:, None] + out) / before
        g[np.arange(len(rows)), a] = np.nan
        res: F64 = np.where(before > 0, g, np.nan)
        return res

    def move(self, j: int, b: int) -> None:
        self.tx_of[j] = b
        self.recompute()
