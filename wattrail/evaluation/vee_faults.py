"""Meter-data faults with known truth, injected into real interval energy (sans-IO).

Input is an (M, N) array of interval kWh (NaN = absent in the source) and the local day of
each interval; output is what an MDM export would then hold, the fault behind every
interval (`truth`, a `Fault` per interval, CLEAN = untouched) and the import register the
meter would have reported at each interval boundary. Nothing is read or written here.

The faults, and what produces each in the field:

    MISSING        1-2 intervals absent (a failed poll, bridged by the next)
    GAP            3-16 intervals absent (a comms outage too long to interpolate)
    MISSING_DAY    a whole local day absent
    STUCK_ZERO     the register repeats: 2-8 intervals of zero ...
    STUCK_CATCHUP  ... then the interval that carries their energy and its own
    SPIKE          one interval multiplied by 5-100 (log-uniform): a profile-store glitch
    ROLLBACK       the register steps back once (a partial reset): a negative interval
    CLOCK_SKIP     the meter's clock jumps ahead 1-2 slots (a missed or double DST change)
                   for 6 h-2 days: the skipped labels are never stamped (absent) ...
    CLOCK_SHIFT    ... the stretch's energy sits k slots late on the wall clock ...
    CLOCK_DUP      ... and when the clock is put right, k labels are stamped twice: the store
                   keeps the first (shifted) value, the second is lost (a conflict)
    ZERO_DAYS      3-5 days of zero while energised (the register stopped counting)
    HIGH_DAY       a day multiplied by 2.5-4 (a wrong multiplier, a double read)
    LOW_DAY        a day multiplied by 0.05-0.3

`CATCHES` is the one table of which validation rule is meant to catch which fault; a rule
that needs an input an interval-only export does not carry (STALE: the edge's stale flag,
CLOCK: the envelope's clock status, CONFLICT: the store's duplicate) is still named there,
so its recall on that data reads "did not run", not "passed".

Placement: every fault sits on one meter, away from every other fault by `buffer` intervals
(day faults: by a whole day), never on an absent source interval, so each fault is judged on
its own and its estimate has clean neighbours. Only meters with data on 90 % of the
intervals and consumption on a third of them get faults (an empty or a dead meter cannot
show one). A fault that finds no room after `_TRIES` draws is not placed (`events` lists
what was).

The register (`register_at`, M x N+1, starting at 0) counts what the meter really counted:
the true energy through a comms loss and under a spike (the interval record was wrong, not
the register), the reported values otherwise (a stuck, rolled-back, stopped or mis-scaled
register reports itself; the clock's skipped labels count nothing). A boundary inside a run
of absent intervals was not read (NaN).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np
import numpy.typing as npt

from cloud.mdm.validation import Rule

F64 = npt.NDArray[np.float64]
_TRIES = 200


class Fault(enum.IntEnum):
    CLEAN = 0
    MISSING = 1
    GAP = 2
    MISSING_DAY = 3
    STUCK_ZERO = 4
    STUCK_CATCHUP = 5
    SPIKE = 6
    ROLLBACK = 7
    CLOCK_SKIP = 8
    CLOCK_SHIFT = 9
    CLOCK_DUP = 10
    ZERO_DAYS = 11
    HIGH_DAY = 12
    LOW_DAY = 13


# Which rule(s) each fault is meant to trip. A zero day is also a day far below its peers,
# so HIGH_LOW is meant to see it too; a skipped clock label is absent, so MISSING sees it.
CATCHES: dict[Fault, Rule] = {
    Fault.MISSING: Rule.MISSING,
    Fault.GAP: Rule.MISSING | Rule.GAP,
    Fault.MISSING_DAY: Rule.MISSING | Rule.GAP,
    Fault.STUCK_ZERO: Rule.STALE,
    Fault.STUCK_CATCHUP: Rule.SPIKE,
    Fault.SPIKE: Rule.SPIKE,
    Fault.ROLLBACK: Rule.NEGATIVE,
    Fault.CLOCK_SKIP: Rule.MISSING | Rule.CLOCK,
    Fault.CLOCK_SHIFT: Rule.CLOCK,
    Fault.CLOCK_DUP: Rule.CLOCK | Rule.CONFLICT,
    Fault.ZERO_DAYS: Rule.ZERO_RUN | Rule.HIGH_LOW,
    Fault.HIGH_DAY: Rule.HIGH_LOW,
    Fault.LOW_DAY: Rule.HIGH_LOW,
}
ABSENT = (Fault.MISSING, Fault.GAP, Fault.MISSING_DAY, Fault.CLOCK_SKIP)


@dataclass(frozen=True)
class FaultPlan:
    """How many faults of each kind per eligible meter (zero_days: the share of meters)."""

    missing: int = 4
    gaps: int = 2
    missing_days: int = 1
    stuck: int = 2
    spikes: int = 3
    rollbacks: int = 1
    clock: int = 1
    zero_days_share: float = 0.3
    high_days: int = 1
    low_days: int = 1
    buffer: int = 4  # clean intervals on each side of an interval fault

    @classmethod
    def empty(cls) -> FaultPlan:
        return cls(**{f.name: 0 for f in fields(cls) if f.name != "buffer"})


@dataclass(frozen=True)
class Event:
    kind: str  # "missing", "gap", ..., "high_day" (one per placed fault)
    meter: int
    start: int  # first interval
    length: int  # intervals touched


@dataclass
class Injected:
    reported: F64  # (M, N) what the export holds
    truth: npt.NDArray[np.int8]  # (M, N) Fault per interval
    register_at: F64  # (M, N + 1) the import register at each boundary, NaN = not read
    source_missing: npt.NDArray[np.bool_]  # (M, N) absent before injection: never scored
    eligible: npt.NDArray[np.bool_]  # (M,) meters that got faults
    events: list[Event] = field(default_factory=list)


def eligible_meters(kwh: F64) -> npt.NDArray[np.bool_]:
    present = np.mean(~np.isnan(kwh), axis=1)
    with np.errstate(invalid="ignore"):
        consumes = np.nanmean(np.where(np.isnan(kwh), np.nan, kwh > 0), axis=1)
    return np.asarray((present >= 0.9) & (np.nan_to_num(consumes) >= 1 / 3), dtype=np.bool_)


class _Meter:
    """One meter's free space: a fault takes a window only where nothing else is near."""

    def __init__(self, x: F64, day: npt.NDArray[np.int64], buffer: int,
                 rng: np.random.Generator) -> None:
        self.x, self.rng, self.buffer = x, rng, buffer
        self.taken = np.isnan(x).copy()  # source gaps are never touched
        self.days = [np.flatnonzero(day == d) for d in np.unique(day)]
        full = max(len(c) for c in self.days)
        self.full_days = [i for i, c in enumerate(self.days) if len(c) == full]
        self.day_taken = np.zeros(len(self.days), dtype=bool)

    def window(self, length: int, ok: Callable[[int], bool] | None = None) -> int | None:
        n = self.x.size
        b = self.buffer
        for _ in range(_TRIES):
            s = int(self.rng.integers(b, max(b + 1, n - length - b)))
            lo, hi = s - b, s + length + b
            if hi > n or self.taken[lo:hi].any():
                continue
            if ok is not None and not ok(s):
                continue
            self.taken[s:s + length] = True
            return s
        return None

    def day_run(self, n_days: int, need_energy: bool) -> list[npt.NDArray[np.int64]] | None:
        """`n_days` consecutive full local days, free, with a free day on either side."""
        full = self.full_days
        for _ in range(_TRIES):
            k = int(self.rng.integers(1, max(2, len(full) - n_days)))
            pick = full[k:k + n_days]
            if len(pick) < n_days or pick[-1] - pick[0] != n_days - 1:
                continue
            lo, hi = pick[0] - 1, pick[-1] + 2
            if lo < 0 or hi > len(self.days) or self.day_taken[lo:hi].any():
                continue
            cols = [self.days[d] for d in pick]
            if any(self.taken[c].any() for c in cols):
                continue
            if need_energy and any(np.nansum(self.x[c]) <= 0 for c in cols):
                continue
            self.day_taken[pick[0]:pick[-1] + 1] = True
            for c in cols:
                self.taken[c] = True
            return cols
        return None


def _on_meter(r: int, mt: _Meter, rr: F64, cr: F64, tr: npt.NDArray[np.int8], plan: FaultPlan,
              rng: np.random.Generator, events: list[Event]) -> None:
    """Place `plan`'s faults on meter `r`: `rr` reported, `cr` counted, `tr` truth (its rows)."""
    xr = mt.x

    def mark(kind: str, cols: npt.NDArray[np.int64], fault: Fault) -> None:
        tr[cols] = fault
        events.append(Event(kind, r, int(cols[0]), int(cols.size)))

    # day faults first: they need whole free days
    for kind, count, n_days in (("missing_day", plan.missing_days, 1),
                                ("zero_days", int(rng.random() < plan.zero_days_share), 0),
                                ("high_day", plan.high_days, 1), ("low_day", plan.low_days, 1)):
        for _ in range(count):
            nd = n_days or int(rng.integers(3, 6))
            got = mt.day_run(nd, need_energy=kind != "missing_day")
            if got is None:
                continue
            cols = np.concatenate(got)
            if kind == "missing_day":
                rr[cols] = np.nan
                mark(kind, cols, Fault.MISSING_DAY)
            elif kind == "zero_days":
                rr[cols] = cr[cols] = 0.0
                mark(kind, cols, Fault.ZERO_DAYS)
            else:
                f = rng.uniform(2.5, 4.0) if kind == "high_day" else rng.uniform(0.05, 0.3)
                rr[cols] = cr[cols] = xr[cols] * f
                mark(kind, cols, Fault.HIGH_DAY if kind == "high_day" else Fault.LOW_DAY)
    for _ in range(plan.clock):
        k, stretch = int(rng.integers(1, 3)), int(rng.integers(12, 97))
        a = mt.window(stretch + k)
        if a is None:
            continue
        b = a + stretch  # labels a..a+k skipped, a+k..b shifted, b..b+k stamped twice
        rr[a:a + k] = np.nan
        cr[a:a + k] = 0.0
        rr[a + k:b + k] = cr[a + k:b + k] = xr[a:b]
        tr[a:a + k], tr[a + k:b], tr[b:b + k] = Fault.CLOCK_SKIP, Fault.CLOCK_SHIFT, Fault.CLOCK_DUP
        events.append(Event("clock", r, a, stretch + k))
    for _ in range(plan.gaps):
        ln = int(rng.integers(3, 17))
        s = mt.window(ln)
        if s is not None:
            rr[s:s + ln] = np.nan
            mark("gap", np.arange(s, s + ln), Fault.GAP)
    for _ in range(plan.stuck):
        k = int(rng.integers(2, 9))
        s = mt.window(k + 1, lambda s, k=k: bool(xr[s:s + k].sum() > 0))  # type: ignore[misc]
        if s is not None:
            rr[s + k] = cr[s + k] = xr[s:s + k + 1].sum()
            rr[s:s + k] = cr[s:s + k] = 0.0
            mark("stuck", np.arange(s, s + k + 1), Fault.STUCK_ZERO)
            tr[s + k] = Fault.STUCK_CATCHUP
    for _ in range(plan.spikes):
        s = mt.window(1, lambda s: bool(xr[s] > 0))
        if s is not None:
            rr[s] = xr[s] * float(np.exp(rng.uniform(np.log(5.0), np.log(100.0))))
            mark("spike", np.arange(s, s + 1), Fault.SPIKE)
    for _ in range(plan.rollbacks):
        s = mt.window(1)
        if s is not None:
            # the register steps back by the interval's energy and 0.05-2 kWh more
            rr[s] = cr[s] = -rng.uniform(0.05, 2.0)
            mark("rollback", np.arange(s, s + 1), Fault.ROLLBACK)
    for _ in range(plan.missing):
        ln = int(rng.integers(1, 3))
        s = mt.window(ln)
        if s is not None:
            rr[s:s + ln] = np.nan
            mark("missing", np.arange(s, s + ln), Fault.MISSING)


def inject(kwh: F64, day: npt.NDArray[np.int64], seed: int,
           plan: FaultPlan | None = None) -> Injected:
    """Inject `plan`'s faults into `kwh` (M, N); `day` (N,) labels each interval's local day."""
    plan = plan or FaultPlan()
    x = np.asarray(kwh, dtype=np.float64)
    if x.ndim != 2 or np.asarray(day).shape != (x.shape[1],):
        raise ValueError(f"kwh must be (M, N) and day (N,); got {x.shape} and {np.shape(day)}")
    rng = np.random.default_rng(seed)
    m, n = x.shape
    rep = x.copy()
    counted = np.nan_to_num(x)  # what the register counted per interval
    truth = np.zeros((m, n), dtype=np.int8)
    ok_meters = eligible_meters(x)
    events: list[Event] = []
    for r in np.flatnonzero(ok_meters).tolist():
        mt = _Meter(x[r], np.asarray(day, dtype=np.int64), plan.buffer, rng)
        _on_meter(r, mt, rep[r], counted[r], truth[r], plan, rng, events)
    reg = np.zeros((m, n + 1))
    reg[:, 1:] = np.cumsum(counted, axis=1)
    absent = np.isnan(rep)
    reg[:, 1:-1][absent[:, :-1] & absent[:, 1:]] = np.nan  # inside an absent run: not read
    return Injected(rep, truth, reg, np.isnan(x), ok_meters, events)
