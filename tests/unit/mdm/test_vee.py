"""Each validation rule and estimator on a hand-made series, with the flags it must raise."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.mdm.calendar import day_period, local_parts, zone
from cloud.mdm.estimation import Method, day_status, estimate
from cloud.mdm.validation import REPLACE, Params, Rule, Series, validate

BERLIN = zone("Europe/Berlin")
START = date(2026, 1, 5)  # a Monday


def _profile(n_days: int, meters: int = 2, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A household-like 15-minute profile: morning and evening peaks, small noise."""
    first = day_period(START, BERLIN).start
    ts = np.arange(int(first.timestamp()), int(first.timestamp()) + n_days * 86_400, 900,
                   dtype=np.int64)
    hour = (ts % 86_400) / 3600 + 1  # CET
    base = 0.08 + 0.15 * np.exp(-((hour - 8) ** 2) / 2) + 0.3 * np.exp(-((hour - 19) ** 2) / 3)
    rng = np.random.default_rng(seed)
    x = np.tile(base, (meters, 1)) * rng.uniform(0.9, 1.1, (meters, ts.size))
    return ts, x


def _series(ts: np.ndarray, x: np.ndarray, **kw: Any) -> Series:
    return Series(ts, 900, local_parts(ts, BERLIN), x, **kw)


def _only(v: Any, rule: Rule) -> set[tuple[int, int]]:
    r, c = np.nonzero(v.failed(rule))
    return set(zip(r.tolist(), c.tolist(), strict=True))


def test_clean_data_fails_no_rule() -> None:
    ts, x = _profile(14)
    v = validate(_series(ts, x, register_kwh=np.stack([np.zeros(2), x.sum(axis=1)], axis=1)))
    assert int(v.flags.sum()) == 0
    ran = {o.rule for o in v.outcomes if o.ran}
    assert Rule.SUM_CHECK in ran and Rule.HIGH_LOW in ran
    # stale/clock/conflict inputs were not given: those rules say so instead of passing
    assert {o.rule for o in v.outcomes if not o.ran} == {Rule.STALE, Rule.CLOCK, Rule.CONFLICT}


def test_missing_and_gap() -> None:
    ts, x = _profile(7)
    x[0, 10:13] = np.nan  # 45 min: missing, interpolable
    x[1, 100:110] = np.nan  # 2.5 h: a gap
    v = validate(_series(ts, x))
    assert _only(v, Rule.MISSING) == {(0, 10), (0, 11), (0, 12)} | {(1, c) for c in range(100, 110)}
    assert _only(v, Rule.GAP) == {(1, c) for c in range(100, 110)}


def test_negative_spike_and_given_flags() -> None:
    ts, x = _profile(7)
    x[0, 50] = -0.3
    x[1, 60] = 4.0
    stale = np.zeros_like(x, dtype=bool)
    stale[0, 5] = True
    v = validate(_series(ts, x, stale=stale, clock_bad=np.zeros_like(stale),
                         conflict=np.zeros_like(stale)))
    assert _only(v, Rule.NEGATIVE) == {(0, 50)}
    assert _only(v, Rule.SPIKE) == {(1, 60)}
    assert _only(v, Rule.STALE) == {(0, 5)}
    assert {o.rule for o in v.outcomes if not o.ran} == {Rule.SUM_CHECK}  # no registers


def test_zero_run_needs_days_and_energy_elsewhere() -> None:
    ts, x = _profile(10, meters=3)
    x[0, 96 * 2: 96 * 6] = 0.0  # four days dead on a meter that consumed before
    x[1, 96 * 2: 96 * 4] = 0.0  # two days: under zero_days
    x[2, :] = 0.0  # never consumed: vacancy, not this rule
    v = validate(_series(ts, x), Params(zero_days=3))
    rows = set(np.nonzero(v.failed(Rule.ZERO_RUN).any(axis=1))[0].tolist())
    assert rows == {0}
    assert int(v.failed(Rule.ZERO_RUN)[0].sum()) == 4 * 96


def test_zero_run_with_voltage_flags_only_energised_intervals() -> None:
    ts, x = _profile(10, meters=1)
    x[0, 96 * 2: 96 * 6] = 0.0
    volts = np.full_like(x, 230.0)
    volts[0, 96 * 2: 96 * 6] = 0.0  # an outage, not a dead meter
    v = validate(_series(ts, x, voltage=volts))
    assert not v.failed(Rule.ZERO_RUN).any()


def test_high_low_flags_a_day_against_its_day_type() -> None:
    ts, x = _profile(28, meters=1)
    x[0, 96 * 9: 96 * 10] *= 8  # a Wednesday eight times its usual
    v = validate(_series(ts, x))
    flagged = v.failed(Rule.HIGH_LOW)[0]
    assert flagged[96 * 9: 96 * 10].all() and flagged.sum() == 96


def test_sum_check_flags_intervals_that_do_not_add_up() -> None:
    ts, x = _profile(7)
    reg = np.stack([np.zeros(2), x.sum(axis=1)], axis=1)
    reg[1, 1] += 2.0  # the register moved 2 kWh more than the intervals say
    v = validate(_series(ts, x, register_kwh=reg))
    assert not v.failed(Rule.SUM_CHECK)[0].any() and v.failed(Rule.SUM_CHECK)[1].all()


def test_linear_interpolation_and_the_register_variant() -> None:
    ts, x = _profile(7)
    truth = x.copy()
    x[0, 10:13] = np.nan
    s = _series(ts, x)
    e = estimate(s, validate(s))
    assert (e.method[0, 10:13] == Method.LINEAR).all()
    want = x[0, 9] + (x[0, 13] - x[0, 9]) * np.arange(1, 4) / 4
    np.testing.assert_allclose(e.value[0, 10:13], want)
    # with registers: the run gets exactly the register difference
    reg = np.concatenate([np.zeros((2, 1)), np.cumsum(truth, axis=1)], axis=1)
    e2 = estimate(s, validate(s), register_at=reg)
    assert e2.value[0, 10:13].sum() == pytest.approx(truth[0, 10:13].sum())
    assert (e2.trigger[0, 10:13] & Rule.MISSING).all()


def test_like_day_fills_a_whole_missing_day() -> None:
    ts, x = _profile(21, meters=1)
    truth = x.copy()
    x[0, 96 * 8: 96 * 9] = np.nan  # a Tuesday
    s = _series(ts, x)
    e = estimate(s, validate(s))
    assert (e.method[0, 96 * 8: 96 * 9] == Method.LIKE_DAY).all()
    err = np.abs(e.value[0, 96 * 8: 96 * 9] - truth[0, 96 * 8: 96 * 9]).sum()
    assert err / truth[0, 96 * 8: 96 * 9].sum() < 0.1  # the profile shape is kept
    reg = np.concatenate([np.zeros((1, 1)), np.cumsum(truth, axis=1)], axis=1)
    e2 = estimate(s, validate(s), register_at=reg)
    assert (e2.method[0, 96 * 8: 96 * 9] == Method.LIKE_DAY_SCALED).all()
    assert e2.value[0, 96 * 8: 96 * 9].sum() == pytest.approx(truth[0, 96 * 8: 96 * 9].sum())


def test_nothing_to_estimate_from_stays_missing() -> None:
    ts, x = _profile(2, meters=1)
    x[0, :] = np.nan
    s = _series(ts, x)
    v = validate(s)
    e = estimate(s, v)
    assert np.isnan(e.value).all() and (e.method == Method.NONE).all()
    assert (day_status(s, v, e) == 2).all()


def test_day_status() -> None:
    ts, x = _profile(14, meters=1)
    x[0, 10] = np.nan  # day 0: estimated
    x[0, 96 * 3 + 5] = 9.0  # day 3: a spike, replaced: estimated
    s = _series(ts, x)
    v = validate(s)
    st_ = day_status(s, v, estimate(s, v))
    assert st_[0, 0] == 1 and st_[0, 3] == 1 and st_[0, 1] == 0


@settings(max_examples=30)
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(0, 96 * 7 - 8))
def test_post_vee_total_equals_the_register_difference(seed: int, run: int, at: int) -> None:
    """Where every estimate is register-based (runs that interpolate), post-VEE totals equal
    the raw register difference; where nothing was estimated they are the raw intervals."""
    ts, x = _profile(7, meters=1, seed=seed % 1000)
    reg = np.concatenate([np.zeros((1, 1)), np.cumsum(x, axis=1)], axis=1)
    at = max(at, 1)
    y = x.copy()
    y[0, at: at + run] = np.nan
    s = _series(ts, y)
    v = validate(s)
    e = estimate(s, v, register_at=reg)
    assert e.value.sum() == pytest.approx(reg[0, -1] - reg[0, 0])
    untouched = (v.flags & np.uint32(REPLACE)) == 0
    np.testing.assert_array_equal(e.value[untouched], x[untouched])
    assert not e.estimated[untouched].any()


def test_dst_days_have_their_own_interval_count() -> None:
    p = day_period(date(2026, 3, 29), BERLIN)
    q = day_period(date(2026, 3, 29) + timedelta(days=1), BERLIN)
    ts = np.arange(int(p.start.timestamp()), int(q.end.timestamp()), 900, dtype=np.int64)
    x = np.full((1, ts.size), 0.2)
    s = _series(ts, x)
    v = validate(s)
    e = estimate(s, v)
    assert ts.size == 92 + 96 and day_status(s, v, e).shape == (1, 2)


def test_the_balance_meter_checks_a_lone_missing_customer() -> None:
    from cloud.mdm.check_meter import check_values

    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 0.5, (4, 200))
    balance = x.sum(axis=0) * 1.06  # 6 % loss on top of what the customers use
    raw = x.copy()
    raw[1, 50:60] = np.nan  # one customer missing: checkable
    raw[2, 100] = raw[3, 100] = np.nan  # two at once: not splittable
    check, f = check_values(balance, raw, min_full=96)
    assert f == pytest.approx(0.06 / 1.06)
    # b - others - f b = 1.06 all - (all - x1) - 0.06 all = x1: the customer's true energy
    np.testing.assert_allclose(check[1, 50:60], x[1, 50:60], rtol=1e-9)
    assert np.isnan(check[2, 100]) and np.isnan(check[3, 100])
    assert np.isnan(check[0]).all()  # measured intervals get no check
    few, f2 = check_values(balance, raw, min_full=500)
    assert np.isnan(f2) and np.isnan(few).all()  # too little data to find the loss share


def test_a_spike_is_not_put_back_by_the_register() -> None:
    ts, x = _profile(7, meters=1)
    glitch = x.copy()
    glitch[0, 60] += 5.0  # the register jumped: energy nobody used
    reg = np.concatenate([np.zeros((1, 1)), np.cumsum(glitch, axis=1)], axis=1)
    s = _series(ts, glitch)
    v = validate(s)
    assert v.failed(Rule.SPIKE)[0, 60]
    e = estimate(s, v, register_at=reg)
    assert e.method[0, 60] == Method.LINEAR
    assert e.value[0, 60] == pytest.approx((x[0, 59] + x[0, 61]) / 2)  # the neighbours' line
