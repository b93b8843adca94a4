"""Power quality: transformer overload, voltage outside the EN 50160 band, phase imbalance.

- overload: loading = S / rating per transformer and interval (S = |P + jQ| interval mean);
  reported: the peak loading, the number of intervals above `threshold` (x step = duration),
  the longest run above it and where that run starts (-1 if none);
- voltage band: EN 50160 asks supply voltage within nominal ±10 % (230 V: 207-253 V) for 95 %
  of a week's 10-minute means; we have instantaneous readings at each instant, so we report the
  share of a meter's instants with any phase outside the band, and its lowest and highest
  phase voltage. Voltages below `dead_v` are an outage (kernels.outage), not a quality issue;
- phase imbalance: (max - min) / mean of the three phase currents of a transformer at an
  instant (instants with mean under `i_min` are skipped); reported: mean and share above `limit`.
"""

from __future__ import annotations

import numpy as np

from cloud.analytics.kernels import checks
from cloud.analytics.kernels.config import kernel


@kernel
def _overload(s_va: np.ndarray, rating: np.ndarray, threshold: float, out: np.ndarray) -> None:
    for x in range(s_va.shape[0]):
        peak = 0.0
        over = 0
        run = 0
        best = 0
        best_start = -1
        for t in range(s_va.shape[1]):
            load = s_va[x, t] / rating[x]
            if np.isnan(load):
                run = 0
                continue
            peak = max(peak, load)
            if load > threshold:
                over += 1
                run += 1
                if run > best:
                    best = run
                    best_start = t - run + 1
            else:
                run = 0
        out[x, 0] = peak
        out[x, 1] = over
        out[x, 2] = best
        out[x, 3] = best_start


def overload(s_va: np.ndarray, rating_va: np.ndarray, *, threshold: float = 1.0) -> np.ndarray:
    """float64 (X, 4): peak loading, intervals over, longest run, its start. `s_va` (X, T)."""
    x = checks.array("s_va", s_va, np.float64, 2).shape[0]
    checks.array("rating_va", rating_va, np.float64, 1, (x,))
    out = np.empty((x, 4))
    _overload(s_va, rating_va, float(threshold), out)
    return out


@kernel
def _voltage(v: np.ndarray, lo: float, hi: float, dead_v: float, out: np.ndarray) -> None:
    for m in range(v.shape[0]):
        seen = 0
        bad = 0
        vmin = np.inf
        vmax = -np.inf
        for k in range(v.shape[1]):
            any_phase = False
            outside = False
            for ph in range(3):
                x = v[m, k, ph]
                if np.isnan(x) or x < dead_v:
                    continue
                any_phase = True
                vmin = min(vmin, x)
                vmax = max(vmax, x)
                if x < lo or x > hi:
                    outside = True
            if any_phase:
                seen += 1
                bad += outside
        out[m, 0] = bad / seen if seen else np.nan
        out[m, 1] = vmin if seen else np.nan
        out[m, 2] = vmax if seen else np.nan


def voltage_band(
    v: np.ndarray, *, v_nominal: float = 230.0, band: float = 0.10, dead_fraction: float = 0.5
) -> np.ndarray:
    """float64 (N, 3): share of instants outside nominal ± band, min and max phase voltage.
    `v` float64 (N, K, 3), NaN for absent phases."""
    checks.array("v", v, np.float64, 3, (None, None, 3))
    out = np.empty((v.shape[0], 3))
    _voltage(v, v_nominal * (1 - band), v_nominal * (1 + band), v_nominal * dead_fraction, out)
    return out


@kernel
def _imbalance(i: np.ndarray, limit: float, i_min: float, out: np.ndarray) -> None:
    for x in range(i.shape[0]):
        total = 0.0
        n = 0
        over = 0
        for k in range(i.shape[1]):
            a, b, c = i[x, k, 0], i[x, k, 1], i[x, k, 2]
            if np.isnan(a) or np.isnan(b) or np.isnan(c):
                continue
            mean = (a + b + c) / 3.0
            if mean < i_min:
                continue
            u = (max(a, b, c) - min(a, b, c)) / mean
            total += u
            n += 1
            over += u > limit
        out[x, 0] = total / n if n else np.nan
        out[x, 1] = over / n if n else np.nan


def phase_imbalance(i: np.ndarray, *, limit: float = 0.2, i_min: float = 1.0) -> np.ndarray:
    """float64 (X, 2): mean imbalance and share of instants above `limit`. `i` (X, K, 3) A."""
    checks.array("i", i, np.float64, 3, (None, None, 3))
    out = np.empty((i.shape[0], 2))
    _imbalance(i, float(limit), float(i_min), out)
    return out


def warm_up() -> None:
    overload(np.ones((1, 2)), np.ones(1))
    voltage_band(np.full((1, 2, 3), 230.0))
    phase_imbalance(np.ones((1, 2, 3)))
