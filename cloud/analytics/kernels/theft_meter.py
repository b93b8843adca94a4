"""Per-meter theft indicators read directly off one meter's own measurements.

Each returns, per customer meter, a value in [0, 1] (the share of the meter's intervals or
instants showing the symptom) and the first/last interval where it showed (-1 if never):
- bypass: import and export both below `eps_wh` in an interval while the meter sees voltage
  (> half nominal) and, when it reports currents, less than `i_min` in total at its end: the
  wires are live but nothing is registered. (Without the current test, an honest meter whose
  coarse energy register did not tick in 15 minutes would look bypassed.)
- neutral: phase vs neutral current mismatch at an instant. A single-phase meter's neutral
  current equals its phase current; a three-phase meter's apparent power |P + jQ| equals
  sum(V x I) over phases. A relative mismatch above `tol` counts;
- export_no_pv: export above `eps_wh` on a customer with no PV;
- flags: the meter's own tamper flags (cover, magnetic field, reverse current, rollback bit)
  at an instant, or a ROLLBACK found by the interval kernel;
- comms_drop: after each gap (run of missing instants) the consumption over `window`
  intervals after vs before, each relative to the peer profile (sum(e) / sum(peer), so the
  daily shape does not count as a drop); the value is the largest relative drop, so a meter
  that goes silent and comes back consuming less scores high.
Instants are the K = T + 1 reading times; interval t lies between instants t and t + 1.
"""

from __future__ import annotations

import numpy as np

from cloud.analytics.kernels import checks
from cloud.analytics.kernels.config import kernel
from cloud.analytics.kernels.intervals import FLAG_ROLLBACK
from protocols.reading import MeterStatus

TAMPER_BITS = int(
    MeterStatus.COVER_OPEN
    | MeterStatus.MAGNETIC_FIELD
    | MeterStatus.REVERSE_CURRENT
    | MeterStatus.REGISTER_ROLLBACK
)
INDICATORS = ("bypass", "neutral", "export_no_pv", "flags", "comms_drop")


@kernel
def _meter_indicators(
    imp: np.ndarray,
    exp: np.ndarray,
    ivl_flags: np.ndarray,
    v: np.ndarray,
    i: np.ndarray,
    i_n: np.ndarray,
    s_rep: np.ndarray,
    status: np.ndarray,
    present: np.ndarray,
    phases: np.ndarray,
    has_pv: np.ndarray,
    peer: np.ndarray,
    eps_wh: float,
    v_nominal: float,
    tol: float,
    i_min: float,
    window: int,
    tamper_bits: int,
    rollback_flag: int,
    value: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
) -> None:
    n, n_t = imp.shape
    value[:] = 0.0
    first[:] = -1
    last[:] = -1
    for m in range(n):
        hits = np.zeros(5, np.int64)
        seen = np.zeros(5, np.int64)
        for t in range(n_t):
            ie = imp[m, t]
            ee = exp[m, t]
            if not (np.isnan(ie) or np.isnan(ee)):
                vmax = -1.0
                for ph in range(3):
                    if not np.isnan(v[m, t + 1, ph]) and v[m, t + 1, ph] > vmax:
                        vmax = v[m, t + 1, ph]
                # a bypassed meter also sees (almost) no current; an honest meter whose
                # coarse register (EM24: 100 Wh steps) did not tick in this interval does
                cur = 0.0
                known = False
                for ph in range(3):
                    if not np.isnan(i[m, t + 1, ph]):
                        cur += abs(i[m, t + 1, ph])
                        known = True
                if vmax >= 0.0:
                    seen[0] += 1
                    if (ie < eps_wh and ee < eps_wh and vmax > 0.5 * v_nominal
                            and (not known or cur < i_min)):
                        hits[0] += 1
                        _mark(m, 0, t, first, last)
                if not has_pv[m]:
                    seen[2] += 1
                    if ee > eps_wh:
                        hits[2] += 1
                        _mark(m, 2, t, first, last)
            seen[3] += 1
            if ivl_flags[m, t] & rollback_flag:
                hits[3] += 1
                _mark(m, 3, t, first, last)
        for k in range(n_t + 1):
            if not present[m, k]:
                continue
            mis = np.nan
            if phases[m] == 1:
                a = i[m, k, 0]
                b = i_n[m, k]
                big = max(a, b)
                if big > i_min:
                    mis = abs(a - b) / big
            else:
                vi = 0.0
                isum = 0.0
                for ph in range(3):
                    if not (np.isnan(v[m, k, ph]) or np.isnan(i[m, k, ph])):
                        vi += v[m, k, ph] * i[m, k, ph]
                        isum += i[m, k, ph]
                big = max(vi, s_rep[m, k])
                if isum > i_min and not np.isnan(s_rep[m, k]) and big > 0.0:
                    mis = abs(vi - s_rep[m, k]) / big
            if not np.isnan(mis):
                seen[1] += 1
                if mis > tol:
                    hits[1] += 1
                    _mark(m, 1, min(k, n_t - 1), first, last)
            if status[m, k] & tamper_bits:
                hits[3] += 1
                _mark(m, 3, min(k, n_t - 1), first, last)
        # communication gaps followed by lower consumption
        k = 0
        while k <= n_t:
            if present[m, k]:
                k += 1
                continue
            g0 = k
            while k <= n_t and not present[m, k]:
                k += 1
            before = _ratio_window(imp, peer, m, g0 - 1 - window, g0 - 1)
            after = _ratio_window(imp, peer, m, k, k + window)
            if before > 0.0 and not np.isnan(after):
                drop = 1.0 - after / before
                if drop > value[m, 4]:
                    value[m, 4] = min(drop, 1.0)
                    first[m, 4] = max(g0 - 1, 0)
                    last[m, 4] = min(k, n_t - 1)
        for j in range(4):
            if seen[j] > 0:
                value[m, j] = min(1.0, hits[j] / seen[j])  # flags count instants and intervals


@kernel
def _mark(m: int, j: int, t: int, first: np.ndarray, last: np.ndarray) -> None:
    if first[m, j] < 0 or t < first[m, j]:
        first[m, j] = t
    last[m, j] = max(last[m, j], t)


@kernel
def _ratio_window(e: np.ndarray, peer: np.ndarray, m: int, lo: int, hi: int) -> float:
    se = 0.0
    sp = 0.0
    for t in range(max(lo, 0), min(hi, e.shape[1])):
        if not (np.isnan(e[m, t]) or np.isnan(peer[m, t])):
            se += e[m, t]
            sp += peer[m, t]
    return se / sp if sp > 0.0 else np.nan


def meter_indicators(
    imp: np.ndarray,
    exp: np.ndarray,
    ivl_flags: np.ndarray,
    v: np.ndarray,
    i: np.ndarray,
    i_n: np.ndarray,
    s_rep: np.ndarray,
    status: np.ndarray,
    present: np.ndarray,
    phases: np.ndarray,
    has_pv: np.ndarray,
    peer: np.ndarray,
    *,
    eps_wh: float = 1.0,
    v_nominal: float = 230.0,
    tol: float = 0.1,
    i_min: float = 0.2,
    window: int = 8,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(value float64 (N, 5), first int64 (N, 5), last int64 (N, 5)), columns = INDICATORS.

    Intervals: `imp`, `exp` float64 (N, T) Wh, `ivl_flags` uint8 (N, T) from interval_energy.
    Instants (K = T + 1): `v`, `i` float64 (N, K, 3) (NaN for absent phases; a single-phase
    meter's phase is column 0), `i_n`, `s_rep` (reported |P + jQ|, VA) float64 (N, K), `status`
    int64 (N, K), `present` bool (N, K). Per meter: `phases` int64 (N,), `has_pv` bool (N,).
    `peer` float64 (N, T): the peer profile (kernels.theft_pattern.peer_profiles)."""
    n, n_t = checks.array("imp", imp, np.float64, 2).shape
    checks.array("exp", exp, np.float64, 2, (n, n_t))
    checks.array("ivl_flags", ivl_flags, np.uint8, 2, (n, n_t))
    checks.array("v", v, np.float64, 3, (n, n_t + 1, 3))
    checks.array("i", i, np.float64, 3, (n, n_t + 1, 3))
    for name, a, dt in (
        ("i_n", i_n, np.float64),
        ("s_rep", s_rep, np.float64),
        ("status", status, np.int64),
        ("present", present, np.bool_),
    ):
        checks.array(name, a, dt, 2, (n, n_t + 1))
    checks.array("phases", phases, np.int64, 1, (n,))
    checks.array("has_pv", has_pv, np.bool_, 1, (n,))
    checks.array("peer", peer, np.float64, 2, (n, n_t))
    if n_t < 1:
        raise checks.KernelInputError("imp", "needs at least one interval (T >= 1)")
    value = np.empty((n, 5))
    first = np.empty((n, 5), np.int64)
    last = np.empty((n, 5), np.int64)
    _meter_indicators(
        imp,
        exp,
        ivl_flags,
        v,
        i,
        i_n,
        s_rep,
        status,
        present,
        phases,
        has_pv,
        peer,
        float(eps_wh),
        float(v_nominal),
        float(tol),
        float(i_min),
        int(window),
        TAMPER_BITS,
        FLAG_ROLLBACK,
        value,
        first,
        last,
    )
    return value, first, last


def warm_up() -> None:
    n, t = 1, 2
    meter_indicators(
        np.ones((n, t)),
        np.zeros((n, t)),
        np.zeros((n, t), np.uint8),
        np.full((n, t + 1, 3), 230.0),
        np.ones((n, t + 1, 3)),
        np.ones((n, t + 1)),
        np.ones((n, t + 1)),
        np.zeros((n, t + 1), np.int64),
        np.ones((n, t + 1), np.bool_),
        np.ones(n, np.int64),
        np.zeros(n, np.bool_),
        np.ones((n, t)),
    )
