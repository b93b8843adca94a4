"""Theft and tamper scenarios: how a customer's meter misreports what the wires carry.

Rules:
- Only the *reported* consumption changes. The true load flows through the wires whatever the
  meter says, so every stolen kWh shows up at the balance meter (physics.py sees true loads).
- Attacks act on consumption x_t (the load, in kW, per one-minute interval t of the local day);
  rooftop PV generation is reported honestly, so the meter's net = h(x)_t - pv_t.
- The false-data-injection attacks are those of Jokar, Arianpoo & Leung, "Electricity Theft
  Detection in AMI Using Customers' Consumption Patterns", IEEE Trans. Smart Grid 7(1), 2016:
    h1  a * x_t, a drawn once in [0.1, 0.8]
    h2  x_t outside, 0 inside a window [start, start + len) of every day (on/off attack)
    h3  gamma_t * x_t, gamma_t drawn per interval in [0.1, 0.8]
    h4  gamma_t * mean(x), mean over the day, gamma_t per interval in [0.1, 0.8]
    h5  mean(x), the day's mean
    h6  x_{N-1-t}: the day's profile reversed (N = 1440 intervals)
  h5 and h6 keep the daily total; what they steal is money under time-of-use tariffs, and the
  ground truth reports the energy difference as it falls (which sums to ~0 over whole days).
- Physical tampers: bypass (meter reads 0 while voltage is present), neutral (part of the load
  returns through earth; the meter bills on the neutral element, so phase current != neutral
  current), reversed_ct (a non-PV customer appears to export), magnetic (a magnet saturates the
  CT: under-registration plus MAGNETIC_FIELD), cover_open (COVER_OPEN flag only), rollback (the
  import register is set back once by
  some weeks of typical consumption). Meter replacement (counter reset) is an operational event,
  not theft: it is in the ground truth so that analytics can tell the two apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from firmware_sim.profiles import LOCAL_UTC_OFFSET_H, hash_uniform
from protocols.reading import MeterStatus

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
FDI_TYPES = ("h1", "h2", "h3", "h4", "h5", "h6")
PHYSICAL_TYPES = ("bypass", "neutral", "reversed_ct", "magnetic", "cover_open", "rollback")
THEFT_TYPES = FDI_TYPES + PHYSICAL_TYPES
DAY_MIN = 1440
_LOCAL_OFFSET_MIN = int(LOCAL_UTC_OFFSET_H * 60)
_FLAGS = {
    "magnetic": MeterStatus.MAGNETIC_FIELD,
    "cover_open": MeterStatus.COVER_OPEN,
    "reversed_ct": MeterStatus.REVERSE_CURRENT,
    "replacement": MeterStatus.METER_REPLACED,
}

# (customer index, first minute, minute count) -> that customer's true load over those minutes
DayLoad = Callable[[int, int, int], F64]


@dataclass(frozen=True)
class TheftEvent:
    """One scenario on one meter over [start_min, end_min) in Unix minutes (UTC)."""

    customer: int
    meter_id: str
    kind: str  # a THEFT_TYPES member or "replacement"
    start_min: int
    end_min: int
    params: dict[str, float] = field(default_factory=dict)

    @property
    def is_theft(self) -> bool:
        return self.kind in THEFT_TYPES

    def active(self, minutes: I64) -> NDArray[np.bool_]:
        return (minutes >= self.start_min) & (minutes < self.end_min)


def _local_day_start(minutes: I64) -> I64:
    return ((minutes + _LOCAL_OFFSET_MIN) // DAY_MIN) * DAY_MIN - _LOCAL_OFFSET_MIN


def _gamma(seed: int, ev: TheftEvent, minutes: I64) -> F64:
    """Per-interval factor in [0.1, 0.8], fixed by (seed, meter, interval)."""
    u = hash_uniform(seed, 11, np.array([ev.customer], np.int64), minutes)
    return 0.1 + 0.7 * u


def attack(seed: int, ev: TheftEvent, minutes: I64, x: F64, day_load: DayLoad) -> F64:
    """What the meter reports as consumption for true consumption x over `minutes` (T,)."""
    k = ev.kind
    if k == "h1" or k in ("neutral", "magnetic"):
        return ev.params["a"] * x
    if k == "h2":
        mod = (minutes + _LOCAL_OFFSET_MIN) % DAY_MIN
        start, length = ev.params["window_start"], ev.params["window_len"]
        inside = ((mod - start) % DAY_MIN) < length
        return np.where(inside, 0.0, x)
    if k == "h3":
        return _gamma(seed, ev, minutes) * x
    if k in ("h4", "h5", "h6"):
        out = np.empty_like(x)
        days = _local_day_start(minutes)
        for d in np.unique(days):
            sel = days == d
            profile = day_load(ev.customer, int(d), DAY_MIN)
            if k == "h6":
                out[sel] = profile[DAY_MIN - 1 - (minutes[sel] - d)]
            elif k == "h5":
                out[sel] = profile.mean()
            else:
                out[sel] = _gamma(seed, ev, minutes[sel]) * profile.mean()
        return out
    if k == "bypass":
        return np.zeros_like(x)
    if k == "reversed_ct":
        # one CT turned round: that phase's share counts negative
        return (1.0 - 2.0 * ev.params["share"]) * x
    return x  # cover_open, rollback, replacement: the flow is reported truly


@dataclass
class TheftPlan:
    seed: int
    events: list[TheftEvent]
    _active: tuple[int, dict[int, TheftEvent]] | None = field(default=None, init=False, repr=False,
                                                               compare=False)

    def reported_load(self, minutes: I64, load: F64, day_load: DayLoad) -> F64:
        """(T, N) consumption as the meters report it; events may overlap only across meters."""
        out = load.copy()
        for ev in self.events:
            act = ev.active(minutes)
            if act.any():
                out[act, ev.customer] = attack(self.seed, ev, minutes[act], load[act, ev.customer], day_load)
        return out

    def status(self, minute: int, n: int) -> NDArray[np.int64]:
        flags = np.zeros(n, np.int64)
        for ev in self.events:
            if ev.kind in _FLAGS and ev.start_min <= minute < ev.end_min:
                flags[ev.customer] |= int(_FLAGS[ev.kind])
        return flags

    def active_kinds(self, minute: int) -> dict[int, TheftEvent]:
        # asked once per meter reading: a 2,000-meter poll asks 2,000 times for the same minute,
        # so the last answer is kept (the plan's events do not change once it is made)
        if self._active is not None and self._active[0] == minute:
            return self._active[1]
        out = {ev.customer: ev for ev in self.events if ev.start_min <= minute < ev.end_min}
        self._active = (minute, out)
        return out


def plan_thefts(
    seed: int,
    meter_ids: list[str],
    has_pv: list[bool],
    phases: list[int],
    start_min: int,
    duration_min: int,
    theft_rate: float,
    replacement_rate: float = 0.0,
    kinds: tuple[str, ...] = THEFT_TYPES,
) -> TheftPlan:
    """Pick round(theft_rate x N) thieves, one scenario each, deterministically from the seed."""
    if not 0.0 <= theft_rate <= 1.0:
        raise ValueError(f"theft_rate must be a fraction in [0, 1], got {theft_rate}")
    rng = np.random.default_rng([seed, 0x7EF7])
    n = len(meter_ids)
    order = rng.permutation(n)
    n_theft = round(theft_rate * n)
    n_repl = round(replacement_rate * n)
    events: list[TheftEvent] = []
    for rank, c in enumerate(order[: n_theft + n_repl]):
        c = int(c)
        if rank >= n_theft:
            kind = "replacement"
        else:
            choices = [k for k in kinds if k != "reversed_ct" or not has_pv[c]]
            kind = str(rng.choice(choices))
        start = start_min + int(rng.integers(0, max(1, duration_min // 3)))
        length = int(rng.integers(DAY_MIN, 5 * DAY_MIN))
        params: dict[str, float] = {}
        if kind in ("h1", "neutral", "magnetic"):
            params["a"] = float(rng.uniform(0.1, 0.8) if kind == "h1" else rng.uniform(0.2, 0.6))
        elif kind == "h2":
            params["window_start"] = float(rng.integers(0, DAY_MIN))
            params["window_len"] = float(rng.integers(120, 720))
        elif kind == "reversed_ct":
            params["share"] = 1.0 if phases[c] == 1 else 1.0 / 3.0
        elif kind == "rollback":
            params["days"] = float(rng.uniform(7.0, 60.0))
            length = 1
        elif kind == "replacement":
            length = DAY_MIN  # the new meter shows METER_REPLACED for a day
        events.append(TheftEvent(c, meter_ids[c], kind, start, start + length, params))
    events.sort(key=lambda e: (e.start_min, e.customer))
    return TheftPlan(seed, events)
