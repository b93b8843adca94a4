"""Load and PV profiles: what every customer draws, minute by minute, as a pure function.

The load of customer i in minute m (minutes since the Unix epoch, UTC) is a *stateless*
function of (seed, i, m): a daily shape per customer class, a weekday/weekend variant, a seasonal
factor, and noise from a counter-based hash. Being stateless matters twice: any minute can be
evaluated out of order (the h5/h6 theft attacks need the whole day's profile before the day is
over), and any run with the same seed yields the same numbers, whatever the step size.

All functions take `minutes` with shape (T,) and customer arrays with shape (N,) and return
(T, N) arrays in kW / kvar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from firmware_sim.grid import CUSTOMER_KINDS, Grid

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
LOCAL_UTC_OFFSET_H = 1.0  # the simulated utility's standard time; DST is not modelled
LATITUDE_DEG = 52.0
LONGITUDE_DEG = 5.0

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def hash_uniform(seed: int, stream: int, a: NDArray[np.int64], b: NDArray[np.int64]) -> F64:
    """Uniform [0, 1) from splitmix64 of (seed, stream, a, b), broadcast over a and b.

    A counter-based generator instead of a stateful RNG, so value (a, b) never depends on
    which other values were drawn before it."""
    key = np.uint64((seed * 0x632BE59BD9B4E019 + stream * 0x85EBCA77C2B2AE63) % (1 << 64))
    x: NDArray[np.uint64] = (a.astype(np.uint64) * _GOLD) ^ (b.astype(np.uint64) * _M2)
    x = (x ^ key) + _GOLD
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def hash_normal(seed: int, stream: int, a: NDArray[np.int64], b: NDArray[np.int64]) -> F64:
    """Approximately standard normal (Irwin-Hall of 4 uniforms): bounded, so no wild spikes."""
    total: F64 = sum(hash_uniform(seed, stream * 8 + k, a, b) for k in range(4))  # type: ignore[assignment]
    return (total - 2.0) * float(np.sqrt(3.0))


def _bumps(hour: F64, centres_widths_heights: list[tuple[float, float, float]]) -> F64:
    out = np.zeros_like(hour)
    for c, w, h in centres_widths_heights:
        d = np.abs(hour - c)
        d = np.minimum(d, 24.0 - d)  # the day wraps round at midnight
        out += h * np.exp(-0.5 * (d / w) ** 2)
    return out


def daily_shape(kind: str, hour: F64, weekend: NDArray[np.bool_]) -> F64:
    """Relative load (mean about 1) by local hour for one class."""
    if kind == "residential":
        wd = 0.45 + _bumps(hour, [(7.5, 1.0, 0.8), (13.0, 2.0, 0.25), (19.5, 1.8, 1.4)])
        we = 0.45 + _bumps(hour, [(9.5, 1.8, 0.8), (13.5, 2.0, 0.5), (19.0, 2.0, 1.3)])
    elif kind == "commercial":
        wd = 0.3 + _bumps(hour, [(13.0, 3.5, 1.6)])
        we = 0.3 + _bumps(hour, [(12.0, 2.5, 0.5)])
    else:  # industrial: two shifts on weekdays, a skeleton load on weekends
        day = ((hour >= 6.0) & (hour < 22.0)).astype(np.float64)
        wd = 0.6 + 0.7 * day
        we = 0.5 + 0.05 * day
    return np.where(weekend, we, wd)


def seasonal_factor(kind: str, day_of_year: F64) -> F64:
    if kind == "residential":  # heating and lighting: winter heavy
        return 1.0 + 0.25 * np.cos(2 * np.pi * (day_of_year - 15.0) / 365.25)
    if kind == "commercial":  # cooling: a mild summer peak
        return 1.0 + 0.10 * np.cos(2 * np.pi * (day_of_year - 200.0) / 365.25)
    return np.ones_like(day_of_year)


@dataclass(frozen=True)
class ProfileParams:
    """Per-customer constants the profile needs, as arrays aligned with grid.customers."""

    seed: int
    kind_idx: I64
    base_kw: F64
    pv_kwp: F64
    pf: F64  # load power factor (lagging)
    index: I64

    @classmethod
    def from_grid(cls, grid: Grid) -> ProfileParams:
        n = len(grid.customers)
        kind_idx = np.array([CUSTOMER_KINDS.index(c.kind) for c in grid.customers], np.int64)
        index = np.arange(n, dtype=np.int64)
        pf0 = np.array([0.95, 0.90, 0.85])[kind_idx] if n else np.zeros(0)
        spread = hash_uniform(grid.seed, 1, index, np.zeros(1, np.int64)) - 0.5
        return cls(
            seed=grid.seed,
            kind_idx=kind_idx,
            base_kw=np.array([c.base_kw for c in grid.customers], np.float64),
            pv_kwp=np.array([c.pv_kwp for c in grid.customers], np.float64),
            pf=np.clip(pf0 + 0.06 * spread, 0.7, 0.99),
            index=index,
        )


def _calendar(minutes: I64) -> tuple[F64, NDArray[np.bool_], F64]:
    local_min = minutes + int(LOCAL_UTC_OFFSET_H * 60)
    hour = (local_min % 1440) / 60.0
    days = local_min // 1440
    weekend = ((days + 3) % 7) >= 5  # 1970-01-01 was a Thursday: +3 makes Monday 0
    day_of_year = ((days % 365.2425) + 1.0).astype(np.float64)
    return hour.astype(np.float64), weekend, day_of_year


def load_kw(p: ProfileParams, minutes: I64) -> F64:
    """True active load (kW, >= 0), shape (T, N). Constant within each minute."""
    hour, weekend, doy = _calendar(minutes)
    shape = np.zeros((len(minutes), len(p.base_kw)))
    for k, kind in enumerate(CUSTOMER_KINDS):
        cols = p.kind_idx == k
        if cols.any():
            f = daily_shape(kind, hour, weekend) * seasonal_factor(kind, doy)
            shape[:, cols] = f[:, None]
    m = minutes[:, None]
    block = (minutes // 30)[:, None]  # half-hourly swings (appliances cycling)
    slow = hash_normal(p.seed, 2, block, p.index[None, :])
    fast = hash_normal(p.seed, 3, m, p.index[None, :])
    sigma_slow = np.array([0.35, 0.15, 0.08])[p.kind_idx]
    sigma_fast = np.array([0.10, 0.05, 0.04])[p.kind_idx]
    noise = 1.0 + sigma_slow * slow + sigma_fast * fast
    return p.base_kw * shape * np.maximum(noise, 0.05)


def pv_kw(p: ProfileParams, minutes: I64) -> F64:
    """PV generation (kW, >= 0), shape (T, N): clear-sky sun elevation times shared clouds."""
    hour, _, doy = _calendar(minutes)
    decl = np.radians(23.44) * np.sin(2 * np.pi * (284.0 + doy) / 365.0)
    solar_hour = hour - LOCAL_UTC_OFFSET_H + LONGITUDE_DEG / 15.0
    omega = np.radians(15.0 * (solar_hour - 12.0))
    lat = np.radians(LATITUDE_DEG)
    sin_el = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(omega)
    zero = np.zeros(1, np.int64)
    # Weather is shared by the whole grid: a day's cloudiness and half-hourly passing clouds.
    day_cloud = 0.3 + 0.7 * hash_uniform(p.seed, 4, (minutes // 1440), zero)
    pass_cloud = 0.6 + 0.4 * hash_uniform(p.seed, 5, (minutes // 30), zero)
    clear = 0.85 * np.clip(sin_el, 0.0, None) ** 1.2
    out: F64 = (clear * day_cloud * pass_cloud)[:, None] * p.pv_kwp[None, :]
    return out


def reactive_kvar(p: ProfileParams, load: F64) -> F64:
    """Reactive load (kvar) of the load; PV inverters run at unity power factor."""
    return load * np.tan(np.arccos(p.pf))[None, :]
