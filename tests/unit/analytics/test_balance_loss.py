"""Grouped sums, energy balance, technical loss, NTL: kernels vs references and worked examples."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cloud.analytics.kernels import balance as kb
from cloud.analytics.kernels import loss as kl
from cloud.analytics.kernels.checks import KernelInputError
from tests import analytics_naive as naive
from tests.unit.analytics.strategies import SETTINGS, floats_nan, matrix, seeds


@SETTINGS
@given(data=st.data(), n=st.integers(0, 60), n_keys=st.integers(1, 6))
def test_group_sum_matches_bincount(data: st.DataObject, n: int, n_keys: int) -> None:
    values = data.draw(hnp.arrays(np.float64, n, elements=floats_nan))
    keys = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, n_keys - 1)))
    got, want = kb.group_sum(values, keys, n_keys), naive.group_sum(values, keys, n_keys)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-9, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(got[1], want[1])


@SETTINGS
@given(data=st.data(), m=st.integers(1, 8), t=st.integers(1, 6), g=st.integers(1, 3))
def test_group_sum_rows_matches_reference(data: st.DataObject, m: int, t: int, g: int) -> None:
    values = data.draw(matrix(m, t))
    group = data.draw(hnp.arrays(np.int64, m, elements=st.integers(0, g - 1)))
    got, want = kb.group_sum_rows(values, group, g), naive.group_sum_rows(values, group, g)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-9, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(got[1], want[1])


def test_energy_balance_worked_example() -> None:
    inp = np.array([[1000.0, 1000.0, np.nan]])
    cust = np.array([[400.0, np.nan, 400.0], [500.0, 500.0, 500.0]])
    b = kb.energy_balance(inp, cust, np.zeros(2, np.int64), min_completeness=0.9)
    np.testing.assert_allclose(b.loss_wh[0], [100.0, 500.0, np.nan])
    np.testing.assert_allclose(b.loss_pct[0], [10.0, 50.0, np.nan])
    np.testing.assert_allclose(b.completeness[0], [1.0, 2 / 3, 2 / 3])
    assert b.low_confidence[0].tolist() == [False, True, True]
    assert b.period_loss_wh[0] == pytest.approx(600.0) and b.period_loss_pct[0] == pytest.approx(30.0)
    assert b.period_completeness[0] == pytest.approx(
        7 / 9
    )  # 7 of the 9 expected values (3 meters x 3 intervals)


@SETTINGS
@given(seed=seeds(), x=st.integers(1, 3), t=st.integers(1, 5))
def test_technical_loss_matches_reference(seed: int, x: int, t: int) -> None:
    rng = np.random.default_rng(seed)
    p, q = rng.uniform(0, 4e5, (x, t)), rng.uniform(0, 1e5, (x, t))
    cable = np.where(rng.random((x, t)) < 0.3, np.nan, rng.uniform(0, 500, (x, t)))
    rating, nll = rng.uniform(1e5, 6e5, x), rng.uniform(100, 600, x)
    k = rng.uniform(1000, 5000, x) / rating**2
    np.testing.assert_allclose(
        kl.technical_loss_w(p, q, rating, nll, k, cable),
        naive.technical_loss_w(p, q, rating, nll, k, cable),
        rtol=1e-12,
    )


@SETTINGS
@given(data=st.data(), x=st.integers(1, 3), t=st.integers(1, 12))
def test_fit_matches_lstsq(data: st.DataObject, x: int, t: int) -> None:
    y = data.draw(matrix(x, t, st.one_of(st.floats(-1e3, 1e4), st.just(np.nan))))
    s = data.draw(matrix(x, t, st.one_of(st.floats(0, 1e3), st.just(np.nan))))
    ok = data.draw(hnp.arrays(np.bool_, (x, t)))
    got, want = kl.fit_loss_model(y, s, ok), naive.fit_loss_model(y, s, ok)
    np.testing.assert_array_equal(got[2], want[2])
    # both solve the same 2x2 least squares; compare where the problem is well conditioned
    cond = np.array(
        [_well_conditioned(s[i, ok[i] & ~np.isnan(y[i]) & ~np.isnan(s[i])] ** 2) for i in range(x)], bool
    )
    np.testing.assert_allclose(
        got[0][cond], want[0][cond], rtol=1e-6, atol=1e-3 * (1 + float(np.abs(np.nan_to_num(y)).max()))
    )
    np.testing.assert_allclose(got[1][cond], want[1][cond], rtol=1e-6, atol=1e-6)


def _well_conditioned(s2: np.ndarray) -> bool:
    return len(s2) >= 3 and float(np.std(s2)) > 1e-3 * float(np.mean(s2)) + 1e-6


def test_fit_recovers_nameplate_parameters() -> None:
    rng = np.random.default_rng(3)
    s = rng.uniform(5e4, 3e5, (2, 200))
    true_nll, true_k = np.array([300.0, 600.0]), np.array([2350.0 / 250e3**2, 4600.0 / 630e3**2])
    y = true_nll[:, None] + true_k[:, None] * s**2 + rng.normal(0, 5.0, s.shape)
    ok = rng.random(s.shape) < 0.7
    y[~ok] += 5000.0  # suspicious intervals carry theft: the fit must ignore them
    nll, k, used = kl.fit_loss_model(y, s, ok)
    np.testing.assert_allclose(nll, true_nll, rtol=0.05)
    np.testing.assert_allclose(k, true_k, rtol=0.02)
    assert (used == ok.sum(1)).all()


@SETTINGS
@given(seed=seeds(), m=st.integers(1, 6), x=st.integers(1, 3), t=st.integers(1, 4))
def test_cable_loss_matches_reference(seed: int, m: int, x: int, t: int) -> None:
    rng = np.random.default_rng(seed)
    v_tx = rng.uniform(220, 240, (x, t, 3))
    v = np.where(rng.random((m, t, 3)) < 0.2, np.nan, rng.uniform(215, 242, (m, t, 3)))
    i = np.where(rng.random((m, t, 3)) < 0.2, np.inf, rng.uniform(0, 60, (m, t, 3)))
    tx_of = rng.integers(0, x, m).astype(np.int64)
    np.testing.assert_allclose(kl.cable_loss_w(v_tx, v, i, tx_of), naive.cable_loss_w(v_tx, v, i, tx_of))


def test_ntl_uncertainty_and_revenue() -> None:
    ntl, sigma = kl.ntl_with_uncertainty(
        np.array([1000.0]),
        np.array([600.0]),
        np.array([10000.0]),
        np.array([3 * 3000.0**2]),
        rel_technical=0.1,
        acc_input=0.01,
        acc_customer=0.01,
    )
    assert ntl[0] == 400.0
    assert sigma[0] == pytest.approx(np.sqrt(60.0**2 + 100.0**2 + 3 * 30.0**2))
    np.testing.assert_allclose(
        kl.revenue_at_risk(np.array([4000.0, -10.0]), np.array([0.25, 0.25])), [1.0, 0.0]
    )


def test_wrong_dtype_names_the_argument() -> None:
    with pytest.raises(KernelInputError, match=r"keys: expected dtype int64, got int32; convert"):
        kb.group_sum(np.zeros(3), np.zeros(3, np.int32), 1)
    with pytest.raises(KernelInputError, match="must lie in"):
        kb.group_sum(np.zeros(3), np.array([0, 1, 5], np.int64), 2)
