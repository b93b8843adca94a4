"""Estimation: values for the intervals validation took out (`validation.REPLACE`) or that are
missing, each marked with its method; raw readings are never touched (the caller stores the
result as a new version of the post-VEE layer).

    LINEAR    a run of at most `max_interpolate_s` between two valid intervals: the straight
              line between them; when the registers around the run are known the run gets
              their difference spread evenly instead (linear interpolation of the register,
              which keeps the sum check true), except on a run with a spike, whose register
              difference holds the glitch
    LIKE_DAY  longer runs: the mean of the meter's `like_days` most similar valid days of the
              same day type (weekday / saturday / sunday), interval by interval on the local
              wall clock; "most similar" is the smallest RMS difference over the day's valid
              intervals, or the nearest date if the day has none. Scaled to the register
              difference over the run when that is known (LIKE_DAY_SCALED).
    NONE      no estimate: no valid neighbours and no like day. The interval stays missing.

A run that touches the start or end of the period has only one neighbour: it is not
interpolated (extrapolating a straight line is a guess), it goes to LIKE_DAY.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cloud.mdm.validation import REPLACE, REVIEW, Rule, Series, Validation, runs

F64 = npt.NDArray[np.float64]


class Method(enum.IntEnum):
    ACTUAL = 0
    LINEAR = 1
    LIKE_DAY = 2
    LIKE_DAY_SCALED = 3
    MANUAL = 5  # an edit through the API, with its reason (vee_intervals)
    NONE = 9  # needed an estimate, none could be made


@dataclass(frozen=True)
class EstimateParams:
    max_interpolate_s: int = 3600
    like_days: int = 3


@dataclass
class Estimated:
    value: F64  # (M, N) post-VEE interval energy; NaN where nothing could be estimated
    method: npt.NDArray[np.int8]  # (M, N) Method
    trigger: npt.NDArray[np.uint32]  # (M, N) the rule bits that made it an estimate

    @property
    def estimated(self) -> npt.NDArray[np.bool_]:
        m = self.method
        # a manual edit that marks an interval missing is no estimate: the value is absent
        return np.asarray((m != Method.ACTUAL) & (m != Method.NONE) & ~np.isnan(self.value),
                          dtype=np.bool_)


def estimate(s: Series, v: Validation, p: EstimateParams | None = None,
             register_at: F64 | None = None) -> Estimated:
    """Fill what `v` took out of `s`. `register_at` (M, N+1), optional: the import register at
    each interval boundary (NaN where no reading), for the energy-conserving variants."""
    p = p or EstimateParams()
    x = s.import_kwh
    out = x.copy()
    bad = (v.flags & np.uint32(REPLACE)) != 0
    out[bad] = np.nan
    method = np.where(bad, np.int8(Method.NONE), np.int8(Method.ACTUAL)).astype(np.int8)
    trigger = np.where(bad, v.flags, np.uint32(0)).astype(np.uint32)
    n = x.shape[1]
    rows, starts, lengths = runs(bad)
    max_len = p.max_interpolate_s // s.step_s
    longer: list[tuple[int, int, int]] = []
    for r, a, ln in zip(rows.tolist(), starts.tolist(), lengths.tolist(), strict=True):
        b = a + ln  # first interval after the run
        # a spike is energy the register counted but the customer did not use (a glitch): the
        # register difference over its run would put it back, so no register variant there
        spiked = bool((v.flags[r, a:b] & np.uint32(Rule.SPIKE)).any())
        if ln <= max_len and a > 0 and b < n:
            reg = None if spiked else _register_span(register_at, r, a, b)
            if reg is not None:
                out[r, a:b] = reg / ln
            else:
                left, right = out[r, a - 1], out[r, b]
                out[r, a:b] = left + (right - left) * np.arange(1, ln + 1) / (ln + 1)
            method[r, a:b] = Method.LINEAR
        else:
            longer.append((r, a, b))
    if longer:
        _like_day(s, out, method, bad, longer, p, register_at, v.flags)
    return Estimated(out, method, trigger)


def _register_span(register_at: F64 | None, r: int, a: int, b: int) -> float | None:
    """The register difference over intervals a..b-1, if both ends were read and it is sane."""
    if register_at is None:
        return None
    d = float(register_at[r, b] - register_at[r, a])
    return d if np.isfinite(d) and d >= 0 else None


def _like_day(s: Series, out: F64, method: npt.NDArray[np.int8], bad: npt.NDArray[np.bool_],
              runs: list[tuple[int, int, int]], p: EstimateParams,
              register_at: F64 | None, flags: npt.NDArray[np.uint32]) -> None:
    day = s.parts.day
    slot = s.parts.minute // max(1, s.step_s // 60)  # interval of the local day
    wd = s.parts.weekday
    kind = np.where(wd == 6, 2, np.where(wd == 5, 1, 0))
    days = np.unique(day)
    n_slots = int(slot.max()) + 1 if slot.size else 0
    for r, a, b in runs:
        # a day-by-slot table of this meter's valid values (before this run was filled)
        table = np.full((days.size, n_slots), np.nan)
        di = np.searchsorted(days, day)
        valid = ~bad[r] & ~np.isnan(s.import_kwh[r])
        table[di[valid], slot[valid]] = s.import_kwh[r, valid]
        day_kind = np.full(days.size, -1)
        day_kind[di] = kind
        complete = ~np.isnan(table).any(axis=1)
        run_days = np.unique(di[a:b])
        for d in run_days.tolist():
            cols = np.arange(a, b)[di[a:b] == d]
            cands = np.nonzero(complete & (day_kind == day_kind[d]) & (np.arange(days.size) != d))[0]
            if cands.size == 0:
                continue
            own = table[d]
            have = ~np.isnan(own)
            if have.any():
                dist = np.sqrt(np.nanmean((table[cands][:, have] - own[have]) ** 2, axis=1))
            else:
                dist = np.abs(cands - d).astype(np.float64)
            pick = cands[np.argsort(dist, kind="stable")[: p.like_days]]
            profile = table[pick].mean(axis=0)
            out[r, cols] = profile[slot[cols]]
            method[r, cols] = Method.LIKE_DAY
        filled = method[r, a:b] == Method.LIKE_DAY
        spiked = bool((flags[r, a:b] & np.uint32(Rule.SPIKE)).any())
        reg = None if spiked else _register_span(register_at, r, a, b)
        if reg is not None and filled.all():
            total = float(out[r, a:b].sum())
            if total > 0:
                out[r, a:b] *= reg / total
                method[r, a:b] = Method.LIKE_DAY_SCALED
            elif reg > 0:
                # like days were empty but the register counted energy: keep the energy,
                # spread evenly (the register's linear interpolation)
                out[r, a:b] = reg / (b - a)
                method[r, a:b] = Method.LINEAR


def day_status(s: Series, v: Validation, e: Estimated) -> npt.NDArray[np.int8]:
    """(M, D) per local day: 0 valid (no rule failed, no edit), 1 estimated (every replaced
    interval got an estimate, or a person edited one), 2 failed (an interval is still missing,
    an edit marked one missing, or a review rule failed)."""
    day = s.parts.day
    days = np.unique(day)
    di = np.searchsorted(days, day)
    m = s.shape[0]
    out = np.zeros((m, days.size), dtype=np.int8)
    flagged = (v.flags != 0) | (e.method == Method.MANUAL)  # an edit changes the day
    unfilled = np.isnan(e.value)  # still missing: no estimate, or an edit marked it missing
    review = (v.flags & np.uint32(REVIEW)) != 0
    for d in range(days.size):
        cols = di == d
        out[:, d] = np.where((unfilled[:, cols] | review[:, cols]).any(axis=1), 2,
                             np.where(flagged[:, cols].any(axis=1), 1, 0))
    return out



