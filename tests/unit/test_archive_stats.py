"""The connectivity statistics and the energy-balance move gains, against their textbook
forms: np.corrcoef, the Fisher z formula, Bartlett's effective n, and a brute-force least
squares refit for every move."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.archive import balance, stats


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), t=st.integers(30, 120), holes=st.floats(0.0, 0.3))
def test_corr_is_corrcoef_over_the_valid_samples(seed: int, t: int, holes: float) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(3, t))
    b = a[[0, 2]] * rng.normal(size=(2, 1)) + rng.normal(size=(2, t))
    a[rng.random(a.shape) < holes] = np.nan
    b[rng.random(b.shape) < holes] = np.nan
    got = stats.corr(a, b)
    for p in range(3):
        for q in range(2):
            ok = np.isfinite(a[p]) & np.isfinite(b[q])
            if ok.sum() < stats.MIN_SAMPLES:
                assert np.isnan(got[p, q])
                continue
            # stats.corr standardises each row over its own valid samples; over the pair's
            # common samples the two agree when the holes coincide, so compare on complete rows
            if ok.sum() == np.isfinite(a[p]).sum() == np.isfinite(b[q]).sum():
                want = np.corrcoef(a[p, ok], b[q, ok])[0, 1]
                assert abs(got[p, q] - want) < 1e-9
            assert -1.0 <= got[p, q] <= 1.0


def test_corr_of_complete_rows_matches_corrcoef_exactly() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(4, 200)), rng.normal(size=(5, 200))
    want = np.corrcoef(np.vstack([a, b]))[:4, 4:]
    np.testing.assert_allclose(stats.corr(a, b), want, atol=1e-12)


def test_fisher_z_formula() -> None:
    ra, rb, n = np.array([0.9, 0.5]), np.array([0.2, 0.5]), np.array([103.0, 50.0])
    want = (math.atanh(0.9) - math.atanh(0.2)) / math.sqrt(2.0 / 100.0)
    got = stats.fisher_z(ra, rb, n)
    assert abs(got[0] - want) < 1e-12 and got[1] == 0.0


def test_effective_n_of_an_ar1_series() -> None:
    rng = np.random.default_rng(3)
    rho, t = 0.6, 20_000
    x = np.zeros(t)
    e = rng.normal(size=t)
    for k in range(1, t):
        x[k] = rho * x[k - 1] + e[k]
    got = stats.effective_n(np.vstack([x, rng.normal(size=t)]))
    assert abs(got[0] / (t * (1 - rho) / (1 + rho)) - 1.0) < 0.05  # Bartlett's n(1-rho)/(1+rho)
    assert abs(got[1] / t - 1.0) < 0.05  # white noise keeps its n


def test_bonferroni_confidence() -> None:
    z = np.array([0.0, 3.0, 10.0, np.nan])
    got = stats.bonferroni_conf(z, 10)
    p3 = 0.5 * math.erfc(3.0 / math.sqrt(2.0))
    np.testing.assert_allclose(got, [0.0, 1.0 - 10 * p3, 1.0, 0.0], atol=1e-12)


def _ss_bruteforce(e: np.ndarray, bal: np.ndarray, tx_of: np.ndarray) -> float:
    """Total unexplained sum of squares: each transformer's residual refit by least squares on
    [1, E_bal^2] over its valid intervals."""
    total = 0.0
    for x in range(bal.shape[0]):
        r = bal[x] - np.nansum(np.where(tx_of[:, None] == x, e, 0.0), axis=0)
        ok = np.isfinite(r)
        a = np.column_stack([np.ones(ok.sum()), bal[x, ok] ** 2])
        coef, *_ = np.linalg.lstsq(a, r[ok], rcond=None)
        total += float(((r[ok] - a @ coef) ** 2).sum())
    return total


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_balance_gains_equal_a_refit_after_each_move(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, n_x, t = 9, 3, 40
    e = rng.gamma(2.0, 100.0, size=(n, t))
    true_tx = np.arange(n) % n_x
    bal = np.vstack([e[true_tx == x].sum(axis=0) for x in range(n_x)])
    bal = bal * 1.02 + 5.0 + rng.normal(scale=3.0, size=bal.shape)
    bal[0, rng.random(t) < 0.1] = np.nan  # a balance meter with gaps
    tx_of = true_tx.copy()
    tx_of[0] = 1  # one meter recorded on the wrong transformer
    b = balance.Balance(e, bal, tx_of.astype(np.int64))
    g = b.gains(np.arange(n, dtype=np.int64))
    for j in range(n):
        for x in range(n_x):
            if x == tx_of[j]:
                assert np.isnan(g[j, x])
                continue
            a_tx = tx_of[j]
            moved = tx_of.copy()
            moved[j] = x
            before = sum(_ss_one(e, bal, tx_of, y) for y in (a_tx, x))
            after = sum(_ss_one(e, bal, moved, y) for y in (a_tx, x))
            assert abs(g[j, x] - (before - after) / before) < 1e-6, (j, x)
    assert np.nanargmax(g[0]) == 0 and g[0, 0] > 0.5  # moving it home removes most of the misfit
    assert _ss_bruteforce(e, bal, true_tx) < _ss_bruteforce(e, bal, tx_of)


def _ss_one(e: np.ndarray, bal: np.ndarray, tx_of: np.ndarray, x: int) -> float:
    r = bal[x] - np.where(tx_of[:, None] == x, e, 0.0).sum(axis=0)
    ok = np.isfinite(r)
    a = np.column_stack([np.ones(ok.sum()), bal[x, ok] ** 2])
    coef, *_ = np.linalg.lstsq(a, r[ok], rcond=None)
    return float(((r[ok] - a @ coef) ** 2).sum())
