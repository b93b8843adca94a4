"""Technical loss, non-technical loss (NTL) with its uncertainty, and revenue at risk.

Model, per transformer and interval of `dt_s` seconds (powers are interval means):
    technical_w = no_load_w + k * S^2 + cable_w
where S = |P + jQ| is the apparent power the transformer delivers to its secondary (the balance
meter's input minus the transformer's own loss, found by one fixed-point step), k =
load_loss_w / rating_va^2 from the nameplate, and cable_w the service cables' I²R loss measured
as sum(I x voltage drop) between the transformer and each customer (`cable_loss_w`).
`fit_loss_model` estimates (no_load_w, k) instead, by least squares of the balance residual
minus cable loss on S² over intervals the caller marks as free of suspicion.

    ntl = loss - technical
    sigma(ntl)^2 = (rel_technical * technical)^2 + (acc_input * input)^2
                   + sum_i (acc_customer * |customer_i|)^2
Meter errors are biases of each meter and the model error is a bias of the transformer, so over
a period they add linearly in time and the terms above use period sums, not per-interval sums.
revenue_at_risk = max(ntl, 0) in kWh x the tariff.
"""

from __future__ import annotations

import numpy as np

from cloud.analytics.kernels import checks
from cloud.analytics.kernels.config import kernel


@kernel
def _technical_w(
    p_in_w: np.ndarray,
    q_w: np.ndarray,
    rating_va: np.ndarray,
    no_load_w: np.ndarray,
    k: np.ndarray,
    cable_w: np.ndarray,
    out: np.ndarray,
) -> None:
    for x in range(p_in_w.shape[0]):
        for t in range(p_in_w.shape[1]):
            p = p_in_w[x, t]
            q = q_w[x, t]
            s2 = p * p + q * q
            tx = no_load_w[x] + k[x] * s2
            p2 = p - tx  # the balance meter includes the transformer's own loss: take it out once
            tx = no_load_w[x] + k[x] * (p2 * p2 + q * q)
            c = cable_w[x, t]
            out[x, t] = tx + (0.0 if np.isnan(c) else c)


def technical_loss_w(
    p_in_w: np.ndarray,
    q_var: np.ndarray,
    rating_va: np.ndarray,
    no_load_w: np.ndarray,
    k: np.ndarray,
    cable_w: np.ndarray,
) -> np.ndarray:
    """Mean technical loss power (W) per transformer and interval, float64 (X, T).

    `p_in_w`, `q_var`, `cable_w`: float64 (X, T) interval-mean powers (NaN cable = none
    measured); `rating_va`, `no_load_w`, `k` (W/VA²): float64 (X,)."""
    x, t = checks.array("p_in_w", p_in_w, np.float64, 2).shape
    checks.array("q_var", q_var, np.float64, 2, (x, t))
    checks.array("cable_w", cable_w, np.float64, 2, (x, t))
    for name, a in (("rating_va", rating_va), ("no_load_w", no_load_w), ("k", k)):
        checks.array(name, a, np.float64, 1, (x,))
    out = np.empty((x, t))
    _technical_w(p_in_w, q_var, rating_va, no_load_w, k, cable_w, out)
    return out


@kernel
def _fit(y: np.ndarray, s2: np.ndarray, ok: np.ndarray, out: np.ndarray) -> None:
    for x in range(y.shape[0]):
        n = 0
        sx = 0.0
        sy = 0.0
        for t in range(y.shape[1]):
            if ok[x, t] and not np.isnan(y[x, t]) and not np.isnan(s2[x, t]):
                n += 1
                sx += s2[x, t]
                sy += y[x, t]
        out[x, 0] = np.nan
        out[x, 1] = np.nan
        out[x, 2] = n
        if n < 3:
            continue
        mx = sx / n
        my = sy / n
        cxy = 0.0
        cxx = 0.0
        for t in range(y.shape[1]):
            if ok[x, t] and not np.isnan(y[x, t]) and not np.isnan(s2[x, t]):
                cxy += (s2[x, t] - mx) * (y[x, t] - my)
                cxx += (s2[x, t] - mx) * (s2[x, t] - mx)
        if cxx > 0.0:
            out[x, 1] = cxy / cxx
            out[x, 0] = my - out[x, 1] * mx


def fit_loss_model(
    residual_w: np.ndarray, s_va: np.ndarray, ok: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares (no_load_w, k, samples used) per transformer from (X, T) arrays: the
    balance residual minus cable loss (W), the apparent power (VA), and a bool mask of
    intervals free of suspicion. Fewer than 3 usable samples, or constant S: NaN."""
    x, t = checks.array("residual_w", residual_w, np.float64, 2).shape
    checks.array("s_va", s_va, np.float64, 2, (x, t))
    checks.array("ok", ok, np.bool_, 2, (x, t))
    out = np.empty((x, 3))
    _fit(residual_w, s_va * s_va, ok, out)
    return out[:, 0], out[:, 1], out[:, 2].astype(np.int64)


def ntl_with_uncertainty(
    loss_wh: np.ndarray,
    technical_wh: np.ndarray,
    input_wh: np.ndarray,
    customer_abs_sq_wh2: np.ndarray,
    *,
    rel_technical: float = 0.05,
    acc_input: float = 0.005,
    acc_customer: float = 0.01,
) -> tuple[np.ndarray, np.ndarray]:
    """Period NTL (Wh) and its 1-sigma (Wh) per group, from period sums (G,): loss, technical,
    input, and sum over the group's customers of (customer's period |energy|)^2."""
    for name, a in (
        ("loss_wh", loss_wh),
        ("technical_wh", technical_wh),
        ("input_wh", input_wh),
        ("customer_abs_sq_wh2", customer_abs_sq_wh2),
    ):
        checks.array(name, a, np.float64, 1, (len(loss_wh),))
    ntl = loss_wh - technical_wh
    var = (
        (rel_technical * technical_wh) ** 2
        + (acc_input * input_wh) ** 2
        + acc_customer**2 * customer_abs_sq_wh2
    )
    return ntl, np.sqrt(var)


def revenue_at_risk(ntl_wh: np.ndarray, tariff_per_kwh: np.ndarray) -> np.ndarray:
    """Money lost per group: only a positive NTL is revenue at risk (a negative one is noise or
    a metering error, reported as such, not as a credit)."""
    # numpy's stubs give Any for arithmetic on an ndarray of unknown dtype
    return np.maximum(ntl_wh, 0.0) / 1000.0 * tariff_per_kwh  # type: ignore[no-any-return]


@kernel
def _cable_w(v_tx: np.ndarray, v: np.ndarray, i: np.ndarray, tx_of: np.ndarray, out: np.ndarray) -> None:
    out[:] = 0.0
    for m in range(v.shape[0]):
        x = tx_of[m]
        for t in range(v.shape[1]):
            for ph in range(3):
                d = v_tx[x, t, ph] - v[m, t, ph]
                c = i[m, t, ph]
                if not (np.isnan(d) or np.isnan(c)) and d > 0.0:
                    out[x, t] += c * d


def cable_loss_w(v_tx: np.ndarray, v: np.ndarray, i: np.ndarray, tx_of: np.ndarray) -> np.ndarray:
    """Service-cable loss per transformer and instant (X, T) from per-phase voltages at the
    transformer (X, T, 3) and at each customer (M, T, 3) and customer currents (M, T, 3):
    sum of I x (V_tx - V_customer) over phases with a positive drop. NaN phases are skipped."""
    x, t, _ = checks.array("v_tx", v_tx, np.float64, 3, (None, None, 3)).shape
    m = checks.array("v", v, np.float64, 3, (None, t, 3)).shape[0]
    checks.array("i", i, np.float64, 3, (m, t, 3))
    checks.array("tx_of", tx_of, np.int64, 1, (m,))
    checks.index_range("tx_of", tx_of, x)
    out = np.empty((x, t))
    _cable_w(v_tx, v, i, tx_of, out)
    return out


def warm_up() -> None:
    one = np.ones((1, 3))
    technical_loss_w(one, one, np.ones(1), np.ones(1), np.ones(1), one)
    fit_loss_model(one, one, np.ones((1, 3), np.bool_))
    cable_loss_w(np.ones((1, 1, 3)), np.ones((1, 1, 3)), np.ones((1, 1, 3)), np.zeros(1, np.int64))
