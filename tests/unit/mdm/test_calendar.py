"""Local days and months across daylight-saving changes, in two zones whose changes fall on
different dates (the bug the anchors' users keep reporting: a 23- or 25-hour day)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.mdm.calendar import (
    CalendarError,
    day_period,
    days_of,
    local_parts,
    month_period,
    utc_offsets,
    zone,
)

BERLIN, NEW_YORK = zone("Europe/Berlin"), zone("America/New_York")


@pytest.mark.parametrize(("tz", "day", "quarters"), [
    (BERLIN, date(2026, 3, 29), 92), (BERLIN, date(2026, 10, 25), 100),
    (BERLIN, date(2026, 3, 28), 96),
    (NEW_YORK, date(2026, 3, 8), 92), (NEW_YORK, date(2026, 11, 1), 100),
    (NEW_YORK, date(2026, 3, 29), 96),
])
def test_a_dst_day_has_92_or_100_quarter_hours(tz, day, quarters) -> None:
    assert day_period(day, tz).intervals(900) == quarters


def test_berlin_days_start_at_local_midnight() -> None:
    p = day_period(date(2026, 3, 29), BERLIN)
    assert p.start == datetime(2026, 3, 28, 23, tzinfo=UTC)  # CET, +1
    assert p.end == datetime(2026, 3, 29, 22, tzinfo=UTC)  # CEST, +2


def test_a_month_is_the_sum_of_its_days() -> None:
    for tz in (BERLIN, NEW_YORK):
        for label in ("2026-03", "2026-10", "2026-11", "2026-02", "2026-12"):
            m = month_period(label, tz)
            days = days_of(m, tz)
            assert days[0].start == m.start and days[-1].end == m.end
            assert sum(d.intervals() for d in days) == m.intervals()
    assert month_period("2026-03", BERLIN).intervals() == 31 * 96 - 4
    assert month_period("2026-11", NEW_YORK).intervals() == 30 * 96 + 4


@pytest.mark.parametrize("bad", ["2026-13", "2026-1", "January", "2026-00", ""])
def test_a_bad_period_says_the_format(bad: str) -> None:
    with pytest.raises(CalendarError, match="YYYY-MM"):
        month_period(bad, BERLIN)


def test_an_unknown_zone_says_what_to_give() -> None:
    with pytest.raises(CalendarError, match="IANA"):
        zone("Europe/Atlantis")


@given(st.integers(min_value=0, max_value=2 * 10**9), st.sampled_from(
    ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]))
def test_offsets_and_parts_match_zoneinfo(t: int, name: str) -> None:
    tz = zone(name)
    ts = np.array([t, t + 3600, t + 86_400 * 180], dtype=np.int64)
    offs = utc_offsets(ts, tz)
    parts = local_parts(ts, tz)
    for i, x in enumerate(ts):
        local = datetime.fromtimestamp(int(x), UTC).astimezone(tz)
        assert offs[i] == local.utcoffset().total_seconds()
        assert parts.day[i] == (local.date() - date(1970, 1, 1)).days
        assert parts.minute[i] == local.hour * 60 + local.minute
        assert parts.weekday[i] == local.weekday()
        assert parts.month[i] == local.month


def test_parts_of_every_quarter_of_a_dst_day() -> None:
    p = day_period(date(2026, 10, 25), BERLIN)
    ts = np.arange(int(p.start.timestamp()), int(p.end.timestamp()), 900, dtype=np.int64)
    parts = local_parts(ts, BERLIN)
    assert len(ts) == 100 and set(parts.day.tolist()) == {(date(2026, 10, 25) - date(1970, 1, 1)).days}
    # 02:00-03:00 happens twice on the wall clock
    assert int(np.sum((parts.minute >= 120) & (parts.minute < 180))) == 8
    assert parts.minute[0] == 0 and parts.minute[-1] == 23 * 60 + 45
    assert (p.end - p.start) == timedelta(hours=25)
