"""Power quality, outages and forecast kernels vs their references, plus worked examples."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from cloud.analytics.kernels import forecast as kf
from cloud.analytics.kernels import outage as ko
from cloud.analytics.kernels import quality as kq
from tests import analytics_naive as naive
from tests.unit.analytics.strategies import SETTINGS, seeds


@SETTINGS
@given(seed=seeds(), x=st.integers(1, 3), t=st.integers(1, 12))
def test_quality_kernels_match_reference(seed: int, x: int, t: int) -> None:
    rng = np.random.default_rng(seed)
    s = np.where(rng.random((x, t)) < 0.1, np.nan, rng.uniform(0, 1.5e5, (x, t)))
    rating = rng.uniform(5e4, 1e5, x)
    np.testing.assert_allclose(kq.overload(s, rating), naive.overload(s, rating))
    v = np.where(rng.random((x, t, 3)) < 0.2, np.nan, rng.uniform(0, 270, (x, t, 3)))
    np.testing.assert_allclose(kq.voltage_band(v), naive.voltage_band(v))
    i = np.where(rng.random((x, t, 3)) < 0.1, np.nan, rng.uniform(0, 30, (x, t, 3)))
    np.testing.assert_allclose(kq.phase_imbalance(i), naive.phase_imbalance(i))


def test_overload_reports_longest_run() -> None:
    s = np.array([[50.0, 120.0, 130.0, 90.0, 110.0]])
    peak, over, longest, start = kq.overload(s, np.array([100.0]))[0]
    assert (peak, over, longest, start) == (1.3, 3, 2, 1)


@SETTINGS
@given(seed=seeds(), n=st.integers(1, 10), k=st.integers(1, 8), g=st.integers(1, 3))
def test_outage_grouping_matches_reference(seed: int, n: int, k: int, g: int) -> None:
    rng = np.random.default_rng(seed)
    dead = rng.random((n, k)) < 0.6
    group = rng.integers(0, g, n).astype(np.int64)
    present = ~dead | (rng.random((n, k)) < 0.5)
    vmax = np.where(dead & present, 10.0, 230.0)  # dead but answering = no voltage
    out = ko.outages(present, vmax, group, np.zeros(g, np.int64), 1, min_share=0.5, min_meters=1)
    np.testing.assert_array_equal(out.tx_out, naive.group_out(dead, group, g, 0.5, 1))


@SETTINGS
@given(
    seed=seeds(),
    r=st.integers(1, 3),
    t=st.integers(1, 30),
    period=st.integers(1, 8),
    offset=st.integers(0, 9),
)
def test_profile_matches_reference(seed: int, r: int, t: int, period: int, offset: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.where(rng.random((r, t)) < 0.2, np.nan, rng.normal(100, 10, (r, t)))
    np.testing.assert_allclose(kf.profile(y, period, offset=offset), naive.profile(y, period, offset=offset))


@SETTINGS
@given(seed=seeds(), period=st.integers(1, 6), seasons=st.integers(1, 5), horizon=st.integers(1, 8))
def test_holt_winters_matches_reference(seed: int, period: int, seasons: int, horizon: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.normal(100, 10, period * seasons + rng.integers(0, period))
    y[rng.random(len(y)) < 0.1] = np.nan
    y[0] = 100.0  # the first season must not be all NaN (no level to start from)
    np.testing.assert_allclose(kf.holt_winters(y, period, horizon), naive.holt_winters(y, period, horizon))


def test_holt_winters_beats_seasonal_naive_on_a_trend() -> None:
    t = np.arange(24 * 8, dtype=float)
    y = 100 + 0.5 * t + 20 * np.sin(2 * np.pi * t / 24) + np.random.default_rng(1).normal(0, 1, len(t))
    hw = kf.holdout_error(y, 24, 24, "holt_winters")
    sn = kf.holdout_error(y, 24, 24, "seasonal_naive")
    assert hw["mae"] < sn["mae"] and sn["mae"] > 10.0  # naive lags a whole season of trend (12)


def test_runs_are_found() -> None:
    mask = np.array([[True, True, False, True], [False, False, False, False]])
    assert ko.runs(mask).tolist() == [[0, 0, 2], [0, 3, 4]]


def test_warm_up_compiles_every_kernel_module() -> None:
    from cloud.analytics.kernels import warmup

    took = warmup.warm_up()
    assert set(took) == {m.__name__.rsplit(".", 1)[-1] for m in warmup.MODULES}
    assert len(took) == 8
