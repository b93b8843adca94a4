"""Meter data faults with ground truth: what a meter's *data* gets wrong, beside what the wire
does (faults.py). Off unless a `DataFaultPlan` is given (`FaultPlan.data`); with none, every
reading, decision and truth file is byte for byte what it was.

    stuck        the energy registers stop updating at `start` and show the value of the first
                 read in [start, end) until `end`, when they catch up (the meter kept counting
                 inside): a poller sees all four registers repeat while the meter still
                 reports power, and one interval after `end` carries the stuck energy
    spike        at `start` the import register jumps by params["wh"] that nobody consumed (a
                 glitch in the meter's accumulator): the interval holding `start` carries it,
                 the register keeps it
    missing_day  the meter answers no request in [start, end), one local day of its region
    clock_step   the clock of the agent polling the meter's gateway runs params["offset_s"]
                 ahead in [start, end) (it lost its time source and stepped) and is put right
                 at `end`. The simulator serves meters, not agents, so it cannot move an
                 agent's clock: the event is the truth for whoever plays the agent
                 (`clock_offset_s`; wattrail/evaluation/vee_sim.py does). One event per meter.

Placement (`plan_data_faults`) is deterministic from the seed with a generator of its own, so
the comms faults' draws (`plan_faults`) are untouched: each meter's faults sit on distinct
local days, never on the period's first or last day, never on a day next to its missing day,
and never within a day of its gateway's clock step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from protocols.reading import Reading

KINDS = ("stuck", "spike", "missing_day", "clock_step")
_REGISTERS = ("import_wh", "export_wh", "import_varh", "export_varh")


@dataclass(frozen=True)
class DataFault:
    kind: str  # one of KINDS
    meter_id: str
    start_s: float  # UTC seconds, inclusive
    end_s: float  # exclusive (a spike is an instant: end = start)
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown data fault {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.end_s < self.start_s:
            raise ValueError(f"{self.kind} on {self.meter_id}: end before start")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "meter_id": self.meter_id, "start_s": self.start_s,
                "end_s": self.end_s, "params": dict(self.params)}


def _iso(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class DataFaultPlan:
    events: list[DataFault] = field(default_factory=list)
    _by_meter: dict[str, list[DataFault]] = field(default_factory=dict, init=False, repr=False)
    _frozen: dict[tuple[str, float], tuple[Any, ...]] = field(default_factory=dict, init=False,
                                                              repr=False)

    def __post_init__(self) -> None:
        for ev in self.events:
            self._by_meter.setdefault(ev.meter_id, []).append(ev)

    def _at(self, meter_id: str, kind: str, t_s: float) -> DataFault | None:
        for ev in self._by_meter.get(meter_id, ()):
            if ev.kind == kind and ev.start_s <= t_s < ev.end_s:
                return ev
        return None

    def silent(self, meter_id: str, t_s: float) -> bool:
        """Does the meter ignore a request at t_s (a missing day)?"""
        return self._at(meter_id, "missing_day", t_s) is not None

    def clock_offset_s(self, meter_id: str, t_s: float) -> float:
        """How far ahead the clock of the agent polling `meter_id` runs at true time t_s."""
        ev = self._at(meter_id, "clock_step", t_s)
        return float(ev.params["offset_s"]) if ev is not None else 0.0

    def apply(self, reading: Reading) -> Reading:
        """The registers as the faulty meter shows them; `reading.ts_ms` is the true instant
        (readings of one meter must come in time order: a stuck register remembers)."""
        evs = self._by_meter.get(reading.meter_id)
        if not evs:
            return reading
        t_s = reading.ts_ms / 1000.0
        changes: dict[str, Any] = {}
        glitch = sum(float(e.params["wh"]) for e in evs if e.kind == "spike" and e.start_s <= t_s)
        if glitch and reading.import_wh is not None:
            changes["import_wh"] = reading.import_wh + glitch
        stuck = self._at(reading.meter_id, "stuck", t_s)
        if stuck is not None:
            key = (reading.meter_id, stuck.start_s)
            now = tuple(changes.get(n, getattr(reading, n)) for n in _REGISTERS)
            changes.update(zip(_REGISTERS, self._frozen.setdefault(key, now), strict=True))
        return replace(reading, **changes) if changes else reading

    def truth(self, until_s: float | None = None) -> list[dict[str, Any]]:
        """The events that started before `until_s`, as the truth file lists them."""
        out = []
        for ev in sorted(self.events, key=lambda e: (e.start_s, e.meter_id, e.kind)):
            if until_s is not None and ev.start_s >= until_s:
                continue
            end = ev.end_s if until_s is None else min(ev.end_s, until_s)
            out.append({"meter_id": ev.meter_id, "kind": ev.kind, "start": _iso(ev.start_s),
                        "end": _iso(end), "start_ms": round(ev.start_s * 1000),
                        "end_ms": round(end * 1000), "params": dict(ev.params)})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"events": [e.to_dict() for e in self.events]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataFaultPlan:
        return cls([DataFault(e["kind"], e["meter_id"], float(e["start_s"]), float(e["end_s"]),
                              dict(e.get("params", {}))) for e in data["events"]])


@dataclass(frozen=True)
class DataFaultRates:
    """How many faults per faulty meter (stuck, spikes, missing days), the share of meters that
    get them, and clock steps per gateway; lengths in poll steps / hours."""

    share: float = 0.75  # the rest keep their data clean (their gateway's clock may step)
    stuck: int = 1
    stuck_steps: tuple[int, int] = (2, 12)  # repeated reads before the catch-up
    spikes: int = 1
    spike_factor: tuple[float, float] = (5.0, 100.0)  # x the meter's base-load interval, log-uniform
    missing_days: int = 1
    clock_steps: int = 1  # per gateway
    clock_hours: tuple[float, float] = (6.0, 48.0)
    clock_offset_steps: tuple[float, float] = (1.0, 2.5)  # how far ahead, in poll steps


def local_days(start_s: float, end_s: float, tz: str) -> list[tuple[float, float]]:
    """Every whole local day [midnight, next midnight) of `tz` inside [start_s, end_s)."""
    z = ZoneInfo(tz)
    day = datetime.fromtimestamp(start_s, z).date()
    out: list[tuple[float, float]] = []
    while True:
        a = datetime(day.year, day.month, day.day, tzinfo=z).timestamp()
        nxt = day + timedelta(days=1)
        b = datetime(nxt.year, nxt.month, nxt.day, tzinfo=z).timestamp()
        if b > end_s:
            return out
        if a >= start_s:
            out.append((a, b))
        day = nxt


def plan_data_faults(seed: int, gateways: dict[str, str], start_s: float, end_s: float, *,
                     tz: str = "UTC", step_s: int = 900, base_wh: dict[str, float] | None = None,
                     rates: DataFaultRates | None = None) -> DataFaultPlan:
    """Faults for the meters of `gateways` (meter id -> gateway id, in the grid's order) in the
    local days of `tz` within [start_s, end_s). Stuck windows start on the poll grid of
    `step_s` (counted from `start_s`); a spike's size is its meter's `base_wh` (one step at base
    load, default 100 Wh) times the spike factor."""
    r = rates or DataFaultRates()
    if not 0.0 <= r.share <= 1.0:
        raise ValueError(f"share must be a fraction in [0, 1], got {r.share}")
    rng = np.random.default_rng([seed, 0xDA7A])
    days = local_days(start_s, end_s, tz)
    inner = list(range(1, len(days) - 1))  # never the first or last day
    events: list[DataFault] = []
    blocked: dict[str, set[int]] = {}  # gateway -> days its clock step touches (with a margin)
    for gw in sorted(set(gateways.values())):
        blocked[gw] = set()
        for _ in range(r.clock_steps):
            free = [d for d in inner[1:-1] if d not in blocked[gw]]
            if not free:
                break
            d = int(rng.choice(free))
            a = days[d][0] + float(rng.uniform(0, 18)) * 3600.0
            b = min(a + float(rng.uniform(*r.clock_hours)) * 3600.0, days[inner[-1]][0])
            offset = round(float(rng.uniform(*r.clock_offset_steps)) * step_s)
            touched = {i for i, (lo, hi) in enumerate(days) if hi > a - 86400 and lo < b + 86400}
            blocked[gw] |= touched
            for mid, g in gateways.items():
                if g == gw:
                    events.append(DataFault("clock_step", mid, a, b,
                                            {"offset_s": float(offset), "gateway": gw}))
    meters = list(gateways)
    chosen = sorted(int(i) for i in rng.permutation(len(meters))[: round(r.share * len(meters))])
    for i in chosen:
        mid = meters[i]
        free = [d for d in inner if d not in blocked[gateways[mid]]]
        rng.shuffle(free)
        taken: set[int] = set()

        def take(free: list[int] = free, taken: set[int] = taken) -> int | None:
            d = next((d for d in free if d not in taken), None)
            if d is not None:
                taken.add(d)
            return d

        for _ in range(r.missing_days):
            day = take()
            if day is not None:
                taken |= {day - 1, day + 1}  # the days next to it stay clean: like days, not faults
                events.append(DataFault("missing_day", mid, *days[day]))
        for _ in range(r.stuck):
            day = take()
            if day is None:
                continue
            a0 = days[day][0] + 2 * 3600
            k = int(np.ceil((a0 - start_s) / step_s)) + int(rng.integers(0, 16 * 3600 // step_s))
            n = int(rng.integers(r.stuck_steps[0], r.stuck_steps[1] + 1))
            a = start_s + k * step_s
            events.append(DataFault("stuck", mid, a, a + (n + 1) * step_s, {"repeats": n}))
        for _ in range(r.spikes):
            day = take()
            if day is None:
                continue
            k = int(np.ceil((days[day][0] + 3600 - start_s) / step_s)) + int(
                rng.integers(0, 20 * 3600 // step_s))
            t = start_s + k * step_s + float(rng.integers(60, step_s - 60))
            lo, hi = np.log(r.spike_factor[0]), np.log(r.spike_factor[1])
            wh = (base_wh or {}).get(mid, 100.0) * float(np.exp(rng.uniform(lo, hi)))
            events.append(DataFault("spike", mid, t, t, {"wh": round(wh, 1)}))
    return DataFaultPlan(events)
