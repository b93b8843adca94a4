"""Interval energy on a regular time grid from cumulative energy registers.

Definition. Readings are rows (meter, ts_s, register Wh), sorted by meter then time. Each pair
of consecutive readings (a, b) of one meter measures `delta = reg[b] - reg[a]` over [ts_a, ts_b),
and that delta is spread over the grid intervals [t0 + k*step, t0 + (k+1)*step) in proportion
to their overlap with the pair (linear interpolation of the register). Per pair:

- `replaced[b]`: b is the first reading of a new meter whose register started at 0, so
  delta = reg[b] (energy since the swap; flag RESET). Never subtract across a replacement.
- delta < 0 and the meter has a register modulus m > 0 and delta + m is a plausible amount
  for the pair (<= max_power_w * dt): a counter rollover, delta += m (flag ROLLOVER).
- any other delta < 0: a register rollback. It is kept as the register says (negative: that
  energy will never be billed) and flagged ROLLBACK, never silently repaired.
- a pair longer than `max_gap_s` or with a NaN end is a gap: nothing is spread over it.
- a pair longer than `step + slack_s` spans a gap that was bridged by interpolation: the
  intervals it touches are ESTIMATED (Quality 2).

Per interval: covered = seconds of it inside some pair. covered == 0 (or < step / 2: too little
to extrapolate from) -> NaN, Quality COMMS_LOST (3); covered < step - slack_s -> energy scaled
up to the whole interval, ESTIMATED; otherwise VALID (0).
"""

from __future__ import annotations

import numpy as np

from cloud.analytics.kernels import checks
from cloud.analytics.kernels.config import kernel

Q_VALID, Q_ESTIMATED, Q_MISSING = 0, 2, 3  # values of protocols.reading.Quality
FLAG_ROLLOVER, FLAG_RESET, FLAG_ROLLBACK = 1, 2, 4


@kernel
def _interval_energy(
    meter: np.ndarray,
    ts_s: np.ndarray,
    reg: np.ndarray,
    replaced: np.ndarray,
    modulus: np.ndarray,
    t0: int,
    step: int,
    n_steps: int,
    max_gap_s: int,
    slack_s: int,
    max_power_w: float,
    energy: np.ndarray,
    quality: np.ndarray,
    flags: np.ndarray,
) -> None:
    n_meters = energy.shape[0]
    cover = np.zeros((n_meters, n_steps), np.int64)
    bridged = np.zeros((n_meters, n_steps), np.bool_)
    energy[:] = 0.0
    flags[:] = 0
    for b in range(1, len(meter)):
        a = b - 1
        m = meter[b]
        if meter[a] != m:
            continue
        dt = ts_s[b] - ts_s[a]
        if dt <= 0 or dt > max_gap_s or np.isnan(reg[a]) or np.isnan(reg[b]):
            continue
        f = 0
        if replaced[b]:
            delta = reg[b]
            f = FLAG_RESET
        else:
            delta = reg[b] - reg[a]
            if delta < 0.0:
                if modulus[m] > 0.0 and delta + modulus[m] <= max_power_w * dt / 3600.0:
                    delta += modulus[m]
                    f = FLAG_ROLLOVER
                else:
                    f = FLAG_ROLLBACK
        long_pair = dt > step + slack_s
        k0 = max((ts_s[a] - t0) // step, 0)
        k1 = min((ts_s[b] - 1 - t0) // step, n_steps - 1)
        for k in range(k0, k1 + 1):
            s = t0 + k * step
            ov = min(ts_s[b], s + step) - max(ts_s[a], s)
            if ov <= 0:
                continue
            energy[m, k] += delta * ov / dt
            cover[m, k] += ov
            flags[m, k] |= f
            if long_pair:
                bridged[m, k] = True
    for m in range(n_meters):
        for k in range(n_steps):
            c = cover[m, k]
            if c * 2 < step:
                energy[m, k] = np.nan
                quality[m, k] = Q_MISSING
            elif bridged[m, k] or c < step - slack_s:
                energy[m, k] *= step / c
                quality[m, k] = Q_ESTIMATED
            else:
                quality[m, k] = Q_VALID


def interval_energy(
    meter: np.ndarray,
    ts_s: np.ndarray,
    reg: np.ndarray,
    replaced: np.ndarray,
    modulus: np.ndarray,
    *,
    t0: int,
    step: int,
    n_steps: int,
    max_gap_s: int = 6 * 3600,
    slack_s: int | None = None,
    max_power_w: float = 2.0e6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(energy Wh (M, n_steps) float64, quality (M, n_steps) int8, flags (M, n_steps) uint8).

    `meter` int64 (R,) in [0, M) with M = len(modulus); `ts_s` int64 (R,) Unix seconds, rows
    sorted by (meter, ts_s); `reg` float64 (R,) Wh, NaN = not read; `replaced` bool (R,);
    `modulus` float64 (M,) register wrap value in Wh, 0 = the register does not wrap.
    `slack_s` (default step / 10) is the timing jitter tolerated before an interval counts as
    bridged/estimated.
    """
    n = len(checks.array("meter", meter, np.int64, 1))
    checks.array("ts_s", ts_s, np.int64, 1, (n,))
    checks.array("reg", reg, np.float64, 1, (n,))
    checks.array("replaced", replaced, np.bool_, 1, (n,))
    checks.array("modulus", modulus, np.float64, 1)
    checks.index_range("meter", meter, len(modulus))
    checks.positive("step", step)
    if n_steps < 0:
        raise checks.KernelInputError("n_steps", f"must be >= 0, got {n_steps}")
    if n > 1:
        order_bad = (meter[1:] < meter[:-1]) | ((meter[1:] == meter[:-1]) & (ts_s[1:] < ts_s[:-1]))
        if order_bad.any():
            raise checks.KernelInputError(
                "meter/ts_s", "rows must be sorted by (meter, ts_s); use np.lexsort((ts_s, meter))"
            )
    slack = step // 10 if slack_s is None else int(slack_s)
    shape = (len(modulus), n_steps)
    energy = np.empty(shape, np.float64)
    quality = np.empty(shape, np.int8)
    flags = np.empty(shape, np.uint8)
    _interval_energy(
        meter,
        ts_s,
        reg,
        replaced,
        modulus,
        int(t0),
        int(step),
        int(n_steps),
        int(max_gap_s),
        slack,
        float(max_power_w),
        energy,
        quality,
        flags,
    )
    return energy, quality, flags


def warm_up() -> None:
    one = np.zeros(2, np.int64)
    interval_energy(
        one,
        np.array([0, 900], np.int64),
        np.array([0.0, 1.0]),
        np.zeros(2, np.bool_),
        np.zeros(1),
        t0=0,
        step=900,
        n_steps=1,
    )
