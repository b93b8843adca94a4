"""Validation: named, documented, configurable rules run on every interval of every meter.

Input is one `Series`: M meters (rows) by N intervals (columns, labelled by their start, one
step). Each rule declares the inputs it needs; a rule whose input the data does not have (an
MDM export without voltages, say) does not run and says why, it never passes by default. Each
failing interval gets the rule's bit in `flags`; docs/mdm.md has every rule with its formula.

    MISSING    no value for the interval
    GAP        a missing run longer than `max_interpolate_s` (too long to interpolate)
    NEGATIVE   a negative interval: the register went backwards (rollback, replaced meter)
    ZERO_RUN   zero energy for at least `zero_days` days while energised (voltage > 0;
               without voltages: while the meter's other days are not zero)
    SPIKE      x > spike_k · q, q = median over the meter's days of its daily maximum interval,
               and x > spike_min_kwh
    HIGH_LOW   a day whose energy is far from the meter's days of the same day type, on the
               log scale: |ln day - median ln| > high_low_z · 1.4826 · max(MAD of ln,
               high_low_min_spread) (needs `history_days` such days; the day's total is the
               mean of its intervals without spikes and rollbacks times its length, judged if
               half are there; a zero day counts as 2 % of the median)
    SUM_CHECK  Σ intervals of the period ≠ register(end) - register(start), beyond
               max(sum_tolerance · |difference|, 0.01 kWh); flags every interval of the meter
    STALE      a reading flagged stale by the edge (a register repeated with a new timestamp)
    CLOCK      the envelope's clock status was bad when the interval was read
    CONFLICT   the store kept a conflicting duplicate for the interval
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cloud.mdm.calendar import LocalParts

F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]


class Rule(enum.IntFlag):
    MISSING = 1
    GAP = 2
    NEGATIVE = 4
    ZERO_RUN = 8
    SPIKE = 16
    HIGH_LOW = 32
    SUM_CHECK = 64
    STALE = 128
    CLOCK = 256
    CONFLICT = 512


# What makes an interval unusable for a bill (and so a candidate for estimation). HIGH_LOW and
# ZERO_RUN are suspicions for a person to review: the energy may be real.
REPLACE = Rule.MISSING | Rule.GAP | Rule.NEGATIVE | Rule.SPIKE | Rule.STALE
REVIEW = Rule.ZERO_RUN | Rule.HIGH_LOW | Rule.SUM_CHECK | Rule.CLOCK | Rule.CONFLICT


@dataclass(frozen=True)
class Params:
    max_interpolate_s: int = 3600
    zero_days: float = 3.0
    spike_k: float = 6.0  # 4 -> 6 on seeds 1-3 of bench/eval_vee.py: fewer real loads removed
    spike_min_kwh: float = 0.5
    # HIGH_LOW on log day energy; z 5 and spread floor 0.1 chosen on seeds 1-3 of
    # bench/eval_vee.py (it was z 6 on the plain difference: low days went unseen)
    high_low_z: float = 5.0
    high_low_min_spread: float = 0.1
    history_days: int = 4
    sum_tolerance: float = 0.005


@dataclass(frozen=True)
class Series:
    ts_s: npt.NDArray[np.int64]  # (N,) interval starts, UTC seconds
    step_s: int
    parts: LocalParts  # local wall-clock parts of ts_s
    import_kwh: F64  # (M, N), NaN = missing
    register_kwh: F64 | None = None  # (M, 2): import register at period start and end
    voltage: F64 | None = None  # (M, N) mean voltage, NaN = not measured
    stale: B | None = None  # (M, N)
    clock_bad: B | None = None
    conflict: B | None = None

    @property
    def shape(self) -> tuple[int, int]:
        m, n = self.import_kwh.shape
        return int(m), int(n)


@dataclass(frozen=True)
class RuleOutcome:
    rule: Rule
    ran: bool
    why_not: str | None
    failed: int  # intervals flagged


@dataclass
class Validation:
    flags: npt.NDArray[np.uint32]  # (M, N) OR of Rule bits
    outcomes: list[RuleOutcome] = field(default_factory=list)

    def failed(self, rule: Rule) -> B:
        return np.asarray((self.flags & np.uint32(rule)) != 0, dtype=np.bool_)


def runs(mask: B) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(row, start, length) of every run of True along each row."""
    m, n = mask.shape
    padded = np.zeros((m, n + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    rs, cs = np.nonzero(d == 1)
    _, ce = np.nonzero(d == -1)
    # both are row-major ordered, so starts and ends pair up
    return rs.astype(np.int64), cs.astype(np.int64), (ce - cs).astype(np.int64)


def _mark_runs(shape: tuple[int, int], rows: npt.NDArray[np.int64], starts: npt.NDArray[np.int64],
               lengths: npt.NDArray[np.int64]) -> B:
    out = np.zeros(shape, dtype=np.int32)
    flat = out.reshape(-1)
    n = shape[1]
    np.add.at(flat, rows * n + starts, 1)
    ends = starts + lengths
    inside = ends < n
    np.add.at(flat, rows[inside] * n + ends[inside], -1)
    return np.asarray(np.cumsum(out, axis=1) > 0, dtype=np.bool_)


def _day_index(s: Series) -> tuple[npt.NDArray[np.int64], int]:
    days = s.parts.day
    first = int(days.min()) if days.size else 0
    idx = (days - first).astype(np.int64)
    return idx, int(idx.max()) + 1 if idx.size else 0


def _daily_max(values: F64, s: Series) -> F64:
    """(M, D): each meter's largest value per local day (NaN for a day without values)."""
    idx, nd = _day_index(s)
    out = np.full((values.shape[0], nd), np.nan)
    for d in range(nd):
        cols = values[:, idx == d]
        if cols.shape[1]:
            with _quiet():
                out[:, d] = np.nanmax(cols, axis=1)
    return out


@contextmanager
def _quiet() -> Iterator[None]:
    """All-NaN rows are expected here (a meter with no data that day): no warning for them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def r_missing(s: Series, p: Params) -> B | str:
    return np.isnan(s.import_kwh)


def r_gap(s: Series, p: Params) -> B | str:
    rows, starts, lengths = runs(np.isnan(s.import_kwh))
    long = lengths * s.step_s > p.max_interpolate_s
    return _mark_runs(s.shape, rows[long], starts[long], lengths[long])


def r_negative(s: Series, p: Params) -> B | str:
    return np.nan_to_num(s.import_kwh, nan=0.0) < 0


def r_zero_run(s: Series, p: Params) -> B | str:
    x = s.import_kwh
    zero = x == 0
    if s.voltage is not None and not np.isnan(s.voltage).all():
        zero &= np.nan_to_num(s.voltage) > 0
        basis = "voltage"
    else:
        basis = "history"
    rows, starts, lengths = runs(zero)
    need = round(p.zero_days * 86_400 / s.step_s)
    long = lengths >= need
    if basis == "history":
        # without voltages a dead meter and an empty house look alike; flag only meters that
        # consumed on other days (an always-zero meter is a different question: vacancy)
        consumed = np.nansum(np.where(x > 0, x, 0.0), axis=1) > 0
        long &= consumed[rows]
    return _mark_runs(s.shape, rows[long], starts[long], lengths[long])


def r_spike(s: Series, p: Params) -> B | str:
    x = np.where(s.import_kwh > 0, s.import_kwh, np.nan)
    daily_max = _daily_max(x, s)
    with _quiet():
        q = np.nanmedian(daily_max, axis=1)
    q = np.nan_to_num(q, nan=np.inf)
    return np.asarray((np.nan_to_num(s.import_kwh) > p.spike_k * q[:, None])
                      & (np.nan_to_num(s.import_kwh) > p.spike_min_kwh), dtype=np.bool_)


def r_high_low(s: Series, p: Params) -> B | str:
    # A day's total from its usable intervals (a spike or a rollback is another rule's; it
    # must not make the whole day look high), scaled up to the day's length; a day with less
    # than half its intervals usable is not judged.
    spike = r_spike(s, p)
    assert not isinstance(spike, str)
    usable = np.where(spike | (s.import_kwh < 0), np.nan, s.import_kwh)
    idx, nd = _day_index(s)
    days = np.full((s.shape[0], nd), np.nan)
    for d in range(nd):
        cols = usable[:, idx == d]
        have = (~np.isnan(cols)).sum(axis=1)
        with _quiet():
            total = np.nanmean(cols, axis=1) * cols.shape[1]
        days[:, d] = np.where(have * 2 >= cols.shape[1], total, np.nan)
    # the day type of each local day: weekday / saturday / sunday
    wd = np.full(nd, -1)
    wd[idx] = s.parts.weekday
    kind = np.where(wd == 6, 2, np.where(wd == 5, 1, 0))
    bad = np.zeros_like(days, dtype=bool)
    ran = False
    for k in (0, 1, 2):
        cols = np.nonzero(kind == k)[0]
        if cols.size < p.history_days:
            continue
        ran = True
        v = days[:, cols]
        # on the log of the day's energy: a day at a fifth of the usual is as far off as one
        # at five times it (on the plain difference a low day could hardly ever stand out)
        with _quiet():
            med = np.nanmedian(v, axis=1, keepdims=True)
            lv = np.log(np.maximum(v, 0.02 * med + 1e-3))  # a zero day: 2 % of the median
            lmed = np.nanmedian(lv, axis=1, keepdims=True)
            lmad = np.nanmedian(np.abs(lv - lmed), axis=1, keepdims=True)
        scale = 1.4826 * np.maximum(lmad, p.high_low_min_spread)
        enough = (~np.isnan(v)).sum(axis=1, keepdims=True) >= p.history_days
        bad[:, cols] = (np.abs(lv - lmed) > p.high_low_z * scale) & enough
    if not ran:
        return f"needs {p.history_days} days of one day type; the period has fewer"
    return bad[:, idx]


def r_sum_check(s: Series, p: Params) -> B | str:
    if s.register_kwh is None:
        return "needs the register at the period's start and end (an interval-only export)"
    diff = s.register_kwh[:, 1] - s.register_kwh[:, 0]
    total = np.nansum(s.import_kwh, axis=1)
    complete = ~np.isnan(s.import_kwh).any(axis=1) & ~np.isnan(diff)
    bad = complete & (np.abs(total - diff) > np.maximum(p.sum_tolerance * np.abs(diff), 0.01))
    return np.repeat(bad[:, None], s.shape[1], axis=1)


def _given(name: str) -> Callable[[Series, Params], B | str]:
    def rule(s: Series, p: Params) -> B | str:
        v = getattr(s, name)
        if v is None:
            return f"needs the {name.replace('_', ' ')} flag per interval; the data has none"
        return np.asarray(v, dtype=np.bool_)
    return rule


RULES: dict[Rule, Callable[[Series, Params], B | str]] = {
    Rule.MISSING: r_missing, Rule.GAP: r_gap, Rule.NEGATIVE: r_negative,
    Rule.ZERO_RUN: r_zero_run, Rule.SPIKE: r_spike, Rule.HIGH_LOW: r_high_low,
    Rule.SUM_CHECK: r_sum_check, Rule.STALE: _given("stale"), Rule.CLOCK: _given("clock_bad"),
    Rule.CONFLICT: _given("conflict"),
}


def validate(s: Series, p: Params | None = None, rules: Rule | None = None) -> Validation:
    """Run `rules` (all by default) on `s`."""
    p = p or Params()
    chosen = rules if rules is not None else Rule(sum(RULES))
    flags = np.zeros(s.shape, dtype=np.uint32)
    out = Validation(flags)
    for rule, fn in RULES.items():
        if not rule & chosen:
            continue
        res = fn(s, p)
        if isinstance(res, str):
            out.outcomes.append(RuleOutcome(rule, False, res, 0))
            continue
        flags |= np.where(res, np.uint32(rule), np.uint32(0))
        out.outcomes.append(RuleOutcome(rule, True, None, int(res.sum())))
    return out
