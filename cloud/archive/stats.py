"""The statistics the connectivity tests rest on: NaN-aware correlation, the Fisher z test of one
correlation against another with the sample count corrected for autocorrelation, and the
Bonferroni-corrected confidence. Pure NumPy, each checked against its textbook form in the
unit tests."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
MIN_SAMPLES = 24  # fewer valid samples than this: a correlation is not reported (NaN)


def standardise(x: F64) -> tuple[F64, NDArray[np.bool_]]:
    """Zero-mean unit-variance along the last axis over valid samples; NaN -> 0 so a dot
    product over the axis divided by the valid count is a correlation."""
    ok = np.isfinite(x)
    n = ok.sum(axis=-1, keepdims=True)
    xs = np.where(ok, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = xs.sum(axis=-1, keepdims=True) / n
        c = np.where(ok, x - mean, 0.0)
        sd = np.sqrt((c * c).sum(axis=-1, keepdims=True) / n)
        z = np.where(sd > 0, c / sd, 0.0)
    return np.nan_to_num(z), ok


def corr(a: F64, b: F64) -> F64:
    """Correlation of every row of a (P, T) with every row of b (Q, T), NaN-aware."""
    za, oa = standardise(a)
    zb, ob = standardise(b)
    n = oa.astype(np.float64) @ ob.T.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (za @ zb.T) / n
    out: F64 = np.where(n >= MIN_SAMPLES, np.clip(r, -1.0, 1.0), np.nan)
    return out


def fisher_z(r_a: F64, r_b: F64, n_eff: F64) -> F64:
    """Test statistic that correlation r_a exceeds r_b, both measured over n_eff samples:
    (atanh r_a - atanh r_b) / sqrt(2 / (n_eff - 3)). Treats the two as independent, which
    overstates the noise when they share the meter's series: the test errs towards silence."""
    with np.errstate(all="ignore"):
        ra = np.arctanh(np.clip(r_a, -0.999999, 0.999999))
        rb = np.arctanh(np.clip(r_b, -0.999999, 0.999999))
        out: F64 = (ra - rb) / np.sqrt(2.0 / np.maximum(n_eff - 3.0, 1.0))
    return out


def effective_n(x: F64) -> F64:
    """(N,) samples of each row of x (N, T) corrected for lag-1 autocorrelation rho:
    n (1 - rho) / (1 + rho) (Bartlett), with rho >= 0 so the correction never inflates n;
    the correction is calibrated on each meter's own series."""
    ok = np.isfinite(x)
    n = ok.sum(axis=1).astype(np.float64)
    z, _ = standardise(x)
    both = ok[:, 1:] & ok[:, :-1]
    with np.errstate(all="ignore"):
        rho = (z[:, 1:] * z[:, :-1] * both).sum(axis=1) / np.maximum(both.sum(axis=1), 1)
    rho = np.clip(np.nan_to_num(rho), 0.0, 0.95)
    out: F64 = n * (1.0 - rho) / (1.0 + rho)
    return out


def phi(x: F64) -> F64:
    erf = np.vectorize(math.erf, otypes=[np.float64])
    out: F64 = 0.5 * (1.0 + erf(np.asarray(x, np.float64) / math.sqrt(2.0)))
    return out


def bonferroni_conf(z: F64, tests: int) -> F64:
    """1 - (one-sided p-value x number of tests), in [0, 1]: the chance the record is right
    after correcting for having asked the question of every meter and transformer."""
    p = 1.0 - phi(np.nan_to_num(z, nan=0.0))
    out: F64 = np.clip(1.0 - p * tests, 0.0, 1.0)
    return out
