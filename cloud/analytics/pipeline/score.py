"""The suspect score: a transparent combination of the theft indicators, with evidence.

Each indicator becomes evidence e_k in [0, 1] through a fixed, documented ramp or logistic (no
learned weights: an engineer can recompute any score by hand), and the score is a noisy-OR:

    score = 1 - prod_k (1 - w_k * e_k)

i.e. every indicator is an independent reason to visit the meter, w_k how often that reason
alone has been right. Evidence transforms and weights (EVIDENCE below):
    flags          any tamper flag or register rollback          e = 1 if value > 0      w 0.95
    export_no_pv   share of intervals exporting without PV       ramp to 1 at 2 %        w 0.90
    bypass         share of live-but-zero intervals               ramp to 1 at 5 %        w 0.90
    neutral        share of instants with I_phase != I_neutral    ramp to 1 at 5 %        w 0.90
    change_point   drop z-score and drop size      logistic(z; 6, 1) x ramp(drop; 0.15 -> 0.4)  w 0.80
    peer_dev       worst daily 1 - corr with the peer profile     logistic(d; 0.8, 0.05)  w 0.60
    localisation   corr(shortfall, transformer NTL)               logistic(c; 0.25, 0.03) w 0.60
    comms_drop     consumption drop across a comms gap            ramp 0.3 -> 0.7         w 0.50
Estimated stolen energy per meter: the rolled-back register amount, plus the shortfall
sum(max(0, L_out x peer - e)) over the change-point segment when that indicator fired; then the
transformer's positive NTL is shared among its suspects (score >= 0.5) in proportion to score x
that estimate (`allocated_wh`), so per-meter figures add up to what the balance meter saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INDICATOR_NAMES = (
    "flags",
    "export_no_pv",
    "bypass",
    "neutral",
    "change_point",
    "peer_dev",
    "localisation",
    "comms_drop",
    "observer",
    "balance_timing",
)
WEIGHTS = np.array([0.95, 0.90, 0.90, 0.90, 0.80, 0.60, 0.60, 0.50, 0.80, 0.90])


# observer: calibrated F = 30 is half the evidence (chi^2(1) p ~ 4e-8: a customer is picked
# from hundreds to thousands of candidate columns, so a single test's 1e-4 would be too lax)
OBS_MID, OBS_WIDTH = np.log10(30.0), 0.1
Z_MID, Z_WIDTH = 3.0, 0.5  # population gate: robust z of 3 is half the evidence
OWN_Z_MID = 3.0  # observer: the customer's own series changed (z 3) on its attributed day
BAL_Z_MID = 4.0  # balance timing: robust z of 4 (it is a maximum over statistics and days)


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    # numpy's stubs give Any for arithmetic on an ndarray of unknown dtype
    return np.clip((np.nan_to_num(x, nan=lo) - lo) / (hi - lo), 0.0, 1.0)  # type: ignore[no-any-return]


def _logistic(x: np.ndarray, mid: float, width: float) -> np.ndarray:
    z = np.clip((np.nan_to_num(x, nan=-np.inf) - mid) / width, -50.0, 50.0)
    return 1.0 / (1.0 + np.exp(-z))  # type: ignore[no-any-return]  # numpy stubs: Any, as in _ramp


def robust_z(x: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 MAD) over the finite values of the population being scored, NaN
    elsewhere; a MAD of 0 (most values equal) uses the mean absolute deviation, then 1."""
    ok = np.isfinite(x)
    out = np.full(x.shape, np.nan)
    if not ok.any():
        return out
    med = float(np.median(x[ok]))
    dev = np.abs(x[ok] - med)
    scale = 1.4826 * float(np.median(dev))
    if scale <= 0:
        scale = float(dev.mean()) or 1.0
    out[ok] = (x[ok] - med) / scale
    return out


def outlier(x: np.ndarray) -> np.ndarray:
    """Population gate in [0, 1]: logistic of the robust z (3 +- 0.5). An indicator whose value
    is ordinary for this population (a real household's daily shape differs from its peers'
    every day) is no evidence however high its fixed ramp puts it."""
    return _logistic(robust_z(x), Z_MID, Z_WIDTH)


def change_point_evidence(z: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """The change point's own evidence, before the balance meter's agreement."""
    return _logistic(z, 6.0, 1.0) * _ramp(drop, 0.15, 0.4)  # type: ignore[no-any-return]  # numpy stubs: Any, as in _ramp


def evidence(raw: dict[str, np.ndarray]) -> np.ndarray:
    """(N, K) evidence in [0, 1] from raw indicator values keyed as in INDICATOR_NAMES
    (`change_point` needs `change_point_drop` too). The pattern indicators are gated by
    `outlier`, i.e. calibrated on the population being scored (docs/analytics.md)."""
    cols = [
        (np.nan_to_num(raw["flags"]) > 0).astype(np.float64),
        _ramp(raw["export_no_pv"], 0.0, 0.02),
        _ramp(raw["bypass"], 0.0, 0.05),
        _ramp(raw["neutral"], 0.0, 0.05),
        # not population-gated: a drop against the peers is already a z-score, and the gate
        # cost the simulator's proportional thieves (h1, h3) their rank
        # x the balance meter's agreement that the drop is missing energy (1 where none)
        change_point_evidence(raw["change_point"], raw["change_point_drop"])
        * np.nan_to_num(raw.get("change_point_balance", np.ones(len(raw["change_point"]))), nan=1.0),
        _logistic(raw["peer_dev"], 0.8, 0.05) * outlier(raw["peer_dev"]),
        _logistic(raw["localisation"], 0.25, 0.03) * outlier(raw["localisation"]),
        _ramp(raw["comms_drop"], 0.3, 0.7),
        _logistic(np.log10(np.maximum(np.nan_to_num(raw["observer"], nan=0.0), 1e-9)), OBS_MID, OBS_WIDTH)
        * _logistic(raw.get("observer_own_change", np.zeros(len(raw["observer"]))), OWN_Z_MID, Z_WIDTH),
        _logistic(robust_z(raw["balance_timing"]), BAL_Z_MID, Z_WIDTH),
    ]
    return np.stack(cols, axis=1)


def combine(ev: np.ndarray, weights: np.ndarray = WEIGHTS) -> np.ndarray:
    """Noisy-OR of weighted evidence: (N, K) -> (N,) in [0, 1]."""
    return 1.0 - np.prod(1.0 - weights[None, :] * ev, axis=1)  # type: ignore[no-any-return]  # as in _ramp


@dataclass(frozen=True)
class Suspects:
    score: np.ndarray  # (N,)
    evidence: np.ndarray  # (N, 8)
    raw: dict[str, np.ndarray]
    estimated_wh: np.ndarray  # (N,) from the meter's own data
    allocated_wh: np.ndarray  # (N,) the transformer's NTL shared among its suspects
    period: np.ndarray  # (N, 2) first / last interval of the strongest evidence, -1 if none


def allocate(
    ntl_wh: np.ndarray, tx_of: np.ndarray, score: np.ndarray, estimate_wh: np.ndarray, threshold: float = 0.5
) -> np.ndarray:
    """Share each transformer's positive NTL among its suspects in proportion to score x
    estimate (score alone where no suspect has an estimate)."""
    suspect = score >= threshold
    weight = np.where(suspect, score * np.maximum(estimate_wh, 0.0), 0.0)
    tot = np.bincount(tx_of, weights=weight, minlength=len(ntl_wh))
    fallback = np.bincount(tx_of, weights=np.where(suspect, score, 0.0), minlength=len(ntl_wh))
    use_w = tot[tx_of] > 0
    share = np.where(
        use_w,
        weight / np.where(tot[tx_of] > 0, tot[tx_of], 1.0),
        np.where(suspect, score, 0.0) / np.where(fallback[tx_of] > 0, fallback[tx_of], 1.0),
    )
    out: np.ndarray = np.maximum(ntl_wh, 0.0)[tx_of] * share
    return out
