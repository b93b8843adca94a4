"""Local time for metering: days, months and billing periods in a region's IANA time zone.

A utility bills local days and months. Across a daylight-saving change a local day has 23 or 25
hours (92 or 100 quarter hours), so "the day" can never be computed as UTC midnight to UTC
midnight or as 96 intervals; this module turns local periods into UTC half-open ranges
[start, end) and labels UTC interval starts with their local wall-clock parts, vectorised.

Intervals are labelled by their *start* (as the rollup buckets are): the quarter hour
00:00-00:15 local belongs to that day, 23:45-24:00 to the same day.

Offsets are looked up on a 15-minute grid: every time-zone change in the tz database since 1970
falls on a quarter hour, so an offset read at the quarter hour at or before an instant is that
instant's offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

_GRID_S = 900
_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")


class CalendarError(ValueError):
    """A time zone or a period that cannot be used; the message says the fix."""


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (e.g. "Europe/Berlin"), or a CalendarError that says what to give."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CalendarError(f"unknown time zone {name!r}: give an IANA name such as "
                            "'Europe/Berlin' or 'America/New_York'") from exc


def local_midnight_utc(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant at which local `day` starts. Where a zone's clocks jump forward at
    midnight itself, 00:00 does not exist; zoneinfo reads it with the offset before the jump,
    which is the instant of the jump: the day's first existing local instant, as it should."""
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


@dataclass(frozen=True)
class Period:
    """A local period [first_day, last_day] and its UTC range [start, end)."""

    label: str
    first_day: date
    last_day: date
    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    def intervals(self, step_s: int = _GRID_S) -> int:
        return self.seconds // step_s


def day_period(day: date, tz: ZoneInfo) -> Period:
    return Period(day.isoformat(), day, day, local_midnight_utc(day, tz),
                  local_midnight_utc(day + timedelta(days=1), tz))


def month_period(label: str, tz: ZoneInfo) -> Period:
    """A calendar month given as "YYYY-MM", in local time."""
    m = _PERIOD.match(label.strip())
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise CalendarError(f"billing period {label!r}: give a month as YYYY-MM, e.g. 2026-01")
    y, mo = int(m.group(1)), int(m.group(2))
    first = date(y, mo, 1)
    nxt = date(y + (mo == 12), mo % 12 + 1, 1)
    return Period(f"{y:04d}-{mo:02d}", first, nxt - timedelta(days=1),
                  local_midnight_utc(first, tz), local_midnight_utc(nxt, tz))


def days_of(period: Period, tz: ZoneInfo) -> list[Period]:
    out = []
    d = period.first_day
    while d <= period.last_day:
        out.append(day_period(d, tz))
        d += timedelta(days=1)
    return out


def utc_offsets(ts_s: npt.NDArray[np.int64], tz: ZoneInfo) -> npt.NDArray[np.int64]:
    """The UTC offset (seconds, local = UTC + offset) at each instant (UTC epoch seconds)."""
    ts = np.asarray(ts_s, dtype=np.int64)
    if ts.size == 0:
        return np.zeros(0, dtype=np.int64)
    lo = int(ts.min()) // _GRID_S * _GRID_S
    hi = int(ts.max()) // _GRID_S * _GRID_S
    # offsets change rarely: find them on a coarse day grid, and refine only the days whose
    # two ends differ (the DST days), so a year costs ~370 lookups, not 35,000
    day = 86_400
    starts = np.arange(lo // day * day, hi + day, day, dtype=np.int64)
    edges = np.append(starts, starts[-1] + day)
    off_edge = np.array([_offset(int(t), tz) for t in edges], dtype=np.int64)
    grid_t = [int(starts[0])]
    grid_o = [int(off_edge[0])]
    for i in np.nonzero(off_edge[:-1] != off_edge[1:])[0]:
        for t in range(int(edges[i]), int(edges[i + 1]) + 1, _GRID_S):
            o = _offset(t, tz)
            if o != grid_o[-1]:
                grid_t.append(t)
                grid_o.append(o)
    gt = np.asarray(grid_t, dtype=np.int64)
    go = np.asarray(grid_o, dtype=np.int64)
    return go[np.searchsorted(gt, ts, side="right") - 1]


def _offset(t: int, tz: ZoneInfo) -> int:
    off = datetime.fromtimestamp(t, UTC).astimezone(tz).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


@dataclass(frozen=True)
class LocalParts:
    """Local wall-clock parts of UTC instants, one array entry per instant."""

    day: npt.NDArray[np.int64]  # local date as days since 1970-01-01
    minute: npt.NDArray[np.int64]  # minutes since local midnight, 0..1439 (wall clock)
    weekday: npt.NDArray[np.int64]  # Monday 0 .. Sunday 6
    month: npt.NDArray[np.int64]  # 1..12


def local_parts(ts_s: npt.NDArray[np.int64], tz: ZoneInfo) -> LocalParts:
    ts = np.asarray(ts_s, dtype=np.int64)
    local = ts + utc_offsets(ts, tz)
    day = np.floor_divide(local, 86_400)
    minute = (local - day * 86_400) // 60
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
    month = (day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12) + 1
    return LocalParts(day, minute, weekday, month)


def epoch_day(d: date) -> int:
    return (d - date(1970, 1, 1)).days
