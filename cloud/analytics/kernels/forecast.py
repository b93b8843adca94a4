"""Regional consumption profiles and a seasonal forecast with its error on held-out data.

- profile: mean of a series by position in a period (96 = daily at 15 min, 672 = weekly),
  NaN skipped; a position never seen is NaN;
- seasonal naive: the forecast repeats the last full season (the baseline any model must beat);
- Holt-Winters, additive: level l, trend b, seasonal s with period p,
      l_t = a (y_t - s_{t-p}) + (1 - a)(l_{t-1} + b_{t-1})
      b_t = b (l_t - l_{t-1}) + (1 - b) b_{t-1}
      s_t = g (y_t - l_t) + (1 - g) s_{t-p]
  initialised from the first season (level = its mean, trend from the first two seasons when
  the second has data, seasonal = deviations from the level); a NaN y_t keeps the one-step forecast.
`holdout_error` fits on all but the last `horizon` values and reports MAE and MAPE (%) there.
"""

from __future__ import annotations

import numpy as np

from cloud.analytics.kernels import checks
from cloud.analytics.kernels.config import kernel


@kernel
def _profile(y: np.ndarray, period: int, offset: int, out: np.ndarray) -> None:
    for r in range(y.shape[0]):
        sums = np.zeros(period)
        counts = np.zeros(period, np.int64)
        for t in range(y.shape[1]):
            if not np.isnan(y[r, t]):
                j = (t + offset) % period
                sums[j] += y[r, t]
                counts[j] += 1
        for j in range(period):
            out[r, j] = sums[j] / counts[j] if counts[j] > 0 else np.nan


def profile(y: np.ndarray, period: int, *, offset: int = 0) -> np.ndarray:
    """float64 (R, period): mean of each row of `y` (float64 (R, T)) by (t + offset) % period."""
    checks.array("y", y, np.float64, 2)
    checks.positive("period", period)
    out = np.empty((y.shape[0], int(period)))
    _profile(y, int(period), int(offset), out)
    return out


@kernel
def _nanmean(a: np.ndarray) -> float:
    # np.nanmean warns on an all-NaN slice (an error in our tests) without JIT: count by hand
    total = 0.0
    n = 0
    for x in a:
        if not np.isnan(x):
            total += x
            n += 1
    return total / n if n > 0 else np.nan


@kernel
def _holt_winters(
    y: np.ndarray, p: int, alpha: float, beta: float, gamma: float, horizon: int, out: np.ndarray
) -> None:
    first = y[:p]
    level = _nanmean(first)
    trend = 0.0
    if len(y) >= 2 * p:
        second = _nanmean(y[p : 2 * p])
        if not np.isnan(second):
            trend = (second - level) / p
    season = first - level
    for j in range(p):
        if np.isnan(season[j]):
            season[j] = 0.0
    for t in range(p, len(y)):
        s = season[t % p]
        if np.isnan(y[t]):
            level = level + trend
            continue
        new_level = alpha * (y[t] - s) + (1.0 - alpha) * (level + trend)
        trend = beta * (new_level - level) + (1.0 - beta) * trend
        season[t % p] = gamma * (y[t] - new_level) + (1.0 - gamma) * s
        level = new_level
    n = len(y)
    for h in range(horizon):
        out[h] = level + (h + 1) * trend + season[(n + h) % p]


def holt_winters(
    y: np.ndarray, period: int, horizon: int, *, alpha: float = 0.1, beta: float = 0.01, gamma: float = 0.3
) -> np.ndarray:
    """Additive Holt-Winters forecast (float64 (horizon,)) of `y` (float64 (T,), T >= period)."""
    checks.array("y", y, np.float64, 1)
    if len(y) < period or period < 1:
        raise checks.KernelInputError("y", f"needs at least one full season ({period} values), got {len(y)}")
    if np.isnan(y[:period]).all():
        raise checks.KernelInputError("y", "the first season is all NaN: start the series where data begins")
    out = np.empty(int(horizon))
    _holt_winters(y, int(period), float(alpha), float(beta), float(gamma), int(horizon), out)
    return out


def seasonal_naive(y: np.ndarray, period: int, horizon: int) -> np.ndarray:
    """Repeat the last full season of `y` over the horizon."""
    checks.array("y", y, np.float64, 1)
    if len(y) < period or period < 1:
        raise checks.KernelInputError("y", f"needs at least one full season ({period} values), got {len(y)}")
    last = y[len(y) - period :]
    return np.array([last[h % period] for h in range(horizon)], np.float64)


def holdout_error(y: np.ndarray, period: int, horizon: int, method: str = "holt_winters") -> dict[str, float]:
    """Fit on y[:-horizon], forecast the rest: {"mae", "mape_pct"} (MAPE over nonzero truths)."""
    train, test = y[:-horizon].copy(), y[-horizon:]
    fc = (
        holt_winters(train, period, horizon)
        if method == "holt_winters"
        else seasonal_naive(train, period, horizon)
    )
    err = fc - test
    ok = ~np.isnan(err)
    nz = ok & (np.abs(test) > 1e-9)
    return {
        "mae": float(np.abs(err[ok]).mean()) if ok.any() else float("nan"),
        "mape_pct": float(100.0 * np.abs(err[nz] / test[nz]).mean()) if nz.any() else float("nan"),
    }


def warm_up() -> None:
    profile(np.ones((1, 4)), 2)
    holt_winters(np.ones(4), 2, 2)
