"""The plausible-value windows of the historical import (docs/historical-import.md, "Limits").

A value outside them is an error on its line, never stored: either the file is wrong (a unit
mix-up, a corrupted digit, a placeholder date such as 9999-12-31) or the meter is one the
import was not built for. They are sanity bounds, not validation of a meter's own rating
(that is VEE's job).

- Energy per interval: at most MAX_POWER_W x the interval's length, 100 MW: more than the
  largest meters Wattrail archives draw (industrial connections and feeder heads of tens of
  MW). 25,000 kWh in a 15-minute interval passes, 25,000.001 kWh does not.
- Register: the running totals the import builds (cloud/store/readings_import/cumulate.py) stay at most
  MAX_REGISTER_WH = 1e12 Wh (1 TWh, 10^9 kWh: a 10-digit kWh display; 11 years of a 10 MW
  feeder at full load). Why that number: the running total is summed in int64 mWh, which
  overflows at 2^63 mWh ~ 9.2e15 Wh, and stored as float8 Wh, which keeps whole mWh only
  below 2^53 mWh ~ 9.0e12 Wh; at 1e12 Wh one float8 step is 0.12 mWh, so registers and their
  differences (the rollups) stay exact to 1 mWh, 9,000x below the int64 overflow.
- Time: every interval lies in [not_before, not_after], by default 2000-01-01T00:00:00Z to
  now + 1 day (a clock that runs a little ahead, a time zone mix-up of hours, pass; data from
  the future or the 1900s does not). The window can be widened (`wattrail readings import
  --not-before/--not-after`), but never beyond HARD_NOT_BEFORE .. HARD_NOT_AFTER, which keeps
  every timestamp and rollup day representable (Python's datetime ends at 9999-12-31).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

MAX_POWER_W = 100e6
MAX_REGISTER_WH = 1e12
DEFAULT_NOT_BEFORE = datetime(2000, 1, 1, tzinfo=UTC)
DEFAULT_AHEAD = timedelta(days=1)
HARD_NOT_BEFORE = datetime(1900, 1, 1, tzinfo=UTC)
HARD_NOT_AFTER = datetime(2200, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def max_interval_wh(length_us: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """The most energy intervals of `length_us` microseconds may carry, Wh (in this order of
    operations 15 minutes gives exactly 25e6)."""
    return MAX_POWER_W * length_us.astype(np.float64) / 3.6e9


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _us(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Intervals must start at or after `not_before` and end at or before `not_after`."""

    not_before: datetime
    not_after: datetime

    def __post_init__(self) -> None:
        for name in ("not_before", "not_after"):
            t = getattr(self, name)
            if t.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
            if not HARD_NOT_BEFORE <= t <= HARD_NOT_AFTER:
                raise ValueError(f"{name} {iso(t)} is outside {iso(HARD_NOT_BEFORE)} .. "
                                 f"{iso(HARD_NOT_AFTER)}, the widest window the import accepts")
        if self.not_before >= self.not_after:
            raise ValueError(f"not_before {iso(self.not_before)} must be before not_after "
                             f"{iso(self.not_after)}")

    @classmethod
    def default(cls, now: datetime | None = None, not_before: datetime | None = None,
                not_after: datetime | None = None) -> TimeWindow:
        """The default window, 2000-01-01 .. `now` (the clock if None) + 1 day; either end
        can be given instead."""
        if not_after is None:
            not_after = (now or datetime.now(UTC)) + DEFAULT_AHEAD
        return cls(DEFAULT_NOT_BEFORE if not_before is None else not_before, not_after)

    @property
    def us(self) -> tuple[int, int]:
        """(not_before, not_after) in µs since the Unix epoch, as the tokenizer gives them."""
        return _us(self.not_before), _us(self.not_after)

    def __str__(self) -> str:
        return f"{iso(self.not_before)} .. {iso(self.not_after)}"
