"""Tariffs and billing determinants on hand-made series, across DST days in two zones."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cloud.mdm.calendar import day_period, days_of, local_parts, month_period, zone
from cloud.mdm.determinants import combine, compute
from cloud.mdm.tariffs import TariffError, parse_tariff, parse_tariffs

BERLIN, NEW_YORK = zone("Europe/Berlin"), zone("America/New_York")

TOU: dict[str, Any] = {
    "tariff_id": "RES-TOU", "class": "residential", "currency": "EUR",
    "valid_from": "2026-01-01",
    "seasons": {"summer": [4, 5, 6, 7, 8, 9], "winter": [1, 2, 3, 10, 11, 12]},
    "periods": [
        {"name": "peak", "seasons": ["winter"], "day_types": ["weekday"],
         "from": "17:00", "to": "21:00"},
        {"name": "night", "day_types": ["all"], "from": "22:00", "to": "06:00"},
    ],
    "default_period": "day",
    "energy_price": {"peak": 0.40, "night": 0.10, "day": 0.25},
    "demand_charge_per_kw": 5.0, "export_price_per_kwh": 0.08,
    "holidays": ["2026-12-25"],
}


def _ts(p: Any) -> np.ndarray:
    return np.arange(int(p.start.timestamp()), int(p.end.timestamp()), 900, dtype=np.int64)


@pytest.mark.parametrize(("tz", "day", "hours"), [
    (BERLIN, date(2026, 3, 29), 23), (BERLIN, date(2026, 10, 25), 25),
    (NEW_YORK, date(2026, 3, 8), 23), (NEW_YORK, date(2026, 11, 1), 25),
    (BERLIN, date(2026, 1, 7), 24),
])
def test_a_flat_load_bills_the_hours_the_day_has(tz: Any, day: date, hours: int) -> None:
    tariff = parse_tariff(TOU)
    p = day_period(day, tz)
    ts = _ts(p)
    load = np.full((1, ts.size), 0.25)  # 1 kW
    d = compute(ts, 900, local_parts(ts, tz), tariff, load)
    assert d.total_kwh[0] == pytest.approx(hours)
    by = dict(zip(d.period_names, d.kwh[0], strict=True))
    # night 22:00-06:00 is 8 wall-clock hours; a DST change at 02:00/03:00 falls inside it
    assert by["night"] == pytest.approx(8 + (hours - 24))
    weekday_winter = day.weekday() < 5 and day.month in (1, 2, 3, 10, 11, 12)
    assert by["peak"] == pytest.approx(4 if weekday_winter else 0)
    assert d.max_kw[0] == pytest.approx(1.0) and d.complete[0]
    assert d.amount[0] == pytest.approx(0.40 * by["peak"] + 0.10 * by["night"]
                                        + 0.25 * by["day"] + 5.0 * 1.0)


def test_a_holiday_has_no_peak() -> None:
    tariff = parse_tariff(TOU)
    p = day_period(date(2026, 12, 25), BERLIN)  # a Friday
    ts = _ts(p)
    d = compute(ts, 900, local_parts(ts, BERLIN), tariff, np.full((1, ts.size), 0.25))
    assert d.kwh[0][d.period_names.index("peak")] == 0


def test_missing_is_missing_not_zero() -> None:
    tariff = parse_tariff(TOU)
    p = day_period(date(2026, 1, 7), BERLIN)
    ts = _ts(p)
    load = np.full((2, ts.size), 0.25)
    load[1, 10:14] = np.nan
    d = compute(ts, 900, local_parts(ts, BERLIN), tariff, load)
    assert d.missing.tolist() == [0, 4]
    assert d.complete.tolist() == [True, False]
    assert np.isfinite(d.amount[0]) and np.isnan(d.amount[1])
    assert d.total_kwh[1] == pytest.approx(24 - 1)  # only what exists


def test_demand_export_reactive_and_estimated_share() -> None:
    tariff = parse_tariff({**TOU, "reactive_price_per_kvarh": 0.02})
    p = day_period(date(2026, 1, 7), BERLIN)
    ts = _ts(p)
    load = np.full((1, ts.size), 0.25)
    load[0, 40] = 1.5  # 6 kW in 10:00-10:15 local
    est = np.zeros((1, ts.size), dtype=bool)
    est[0, :4] = True
    exp = np.full((1, ts.size), 0.1)
    var = np.full((1, ts.size), 0.05)
    d = compute(ts, 900, local_parts(ts, BERLIN), tariff, load, exp, var, est)
    assert d.max_kw[0] == pytest.approx(6.0) and d.max_kw_at_s[0] == ts[40]
    assert d.export_kwh[0] == pytest.approx(9.6) and d.kvarh[0] == pytest.approx(4.8)
    assert d.estimated_share[0] == pytest.approx(1.0 / d.total_kwh[0])
    energy = float(d.kwh[0] @ tariff.prices())
    assert d.amount[0] == pytest.approx(energy + 30.0 + 4.8 * 0.02 - 9.6 * 0.08)


def test_hourly_data_bills_hourly_demand() -> None:
    tariff = parse_tariff(TOU)
    p = day_period(date(2026, 1, 7), BERLIN)
    ts = np.arange(int(p.start.timestamp()), int(p.end.timestamp()), 3600, dtype=np.int64)
    d = compute(ts, 3600, local_parts(ts, BERLIN), tariff, np.full((1, 24), 2.0))
    assert d.max_kw[0] == pytest.approx(2.0) and d.demand_window_s == 3600


@settings(max_examples=25)
@given(st.sampled_from(["2026-03", "2026-10", "2026-11"]), st.sampled_from([BERLIN, NEW_YORK]),
       st.data())
def test_a_period_is_the_sum_of_its_days(label: str, tz: Any, data: Any) -> None:
    tariff = parse_tariff(TOU)
    month = month_period(label, tz)
    ts = _ts(month)
    load = data.draw(hnp.arrays(np.float64, (3, ts.size), elements=st.one_of(
        st.floats(0, 5, allow_nan=False), st.just(np.nan))))
    est = data.draw(hnp.arrays(np.bool_, (3, ts.size)))
    whole = compute(ts, 900, local_parts(ts, tz), tariff, load, estimated=est)
    pieces = []
    for day in days_of(month, tz):
        sel = (ts >= day.start.timestamp()) & (ts < day.end.timestamp())
        pieces.append(compute(ts[sel], 900, local_parts(ts[sel], tz), tariff, load[:, sel],
                              estimated=est[:, sel]))
    summed = combine(pieces, tariff)
    np.testing.assert_allclose(summed.kwh, whole.kwh, atol=1e-9)
    np.testing.assert_allclose(summed.max_kw, whole.max_kw)
    np.testing.assert_allclose(summed.estimated_share, whole.estimated_share, atol=1e-9)
    np.testing.assert_allclose(summed.amount, whole.amount, atol=1e-6)
    assert (summed.missing == whole.missing).all() and summed.intervals == whole.intervals


@pytest.mark.parametrize(("change", "message"), [
    ({"energy_price": {"peak": 0.4}}, "no price for periods"),
    ({"periods": [{"name": "x", "seasons": ["monsoon"]}]}, "unknown seasons"),
    ({"periods": [{"name": "peak", "from": "25:00"}]}, "HH:MM"),
    ({"periods": [{"name": "peak", "day_types": ["friday"]}]}, "unknown day types"),
    ({"class": "alien"}, "class"),
    ({"valid_to": "2025-01-01"}, "valid_to is before"),
])
def test_a_bad_tariff_names_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(TariffError, match=message):
        parse_tariff({**TOU, **change})


def test_a_tariff_version_given_twice_is_refused() -> None:
    with pytest.raises(TariffError, match="given twice"):
        parse_tariffs({"tariffs": [TOU, TOU]})
    assert len(parse_tariffs([TOU, {**TOU, "valid_from": "2027-01-01"}])) == 2
