"""Theft indicator kernels vs their NumPy references on random inputs with gaps and NaN."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from cloud.analytics.kernels import theft_meter as ktm
from cloud.analytics.kernels import theft_pattern as ktp
from tests import analytics_naive as naive
from tests.unit.analytics.strategies import SETTINGS, seeds


def _series(rng: np.random.Generator, n: int, t: int, nan_share: float = 0.1) -> np.ndarray:
    e = rng.uniform(0, 500, (n, t)) * rng.choice([0.0, 0.3, 1.0, 3.0], (n, 1))
    e[rng.random((n, t)) < nan_share] = np.nan
    e[rng.random((n, t)) < 0.02] = np.inf
    return e


@SETTINGS
@given(seed=seeds(), n=st.integers(1, 4), t=st.integers(2, 10))
def test_meter_indicators_match_reference(seed: int, n: int, t: int) -> None:
    rng = np.random.default_rng(seed)
    k = t + 1
    imp = np.where(rng.random((n, t)) < 0.3, 0.0, rng.uniform(0, 300, (n, t)))
    imp[rng.random((n, t)) < 0.1] = np.nan
    exp = np.where(rng.random((n, t)) < 0.7, 0.0, rng.uniform(0, 50, (n, t)))
    flags = (rng.random((n, t)) < 0.1).astype(np.uint8) * np.uint8(4)
    v = np.where(rng.random((n, k, 3)) < 0.2, np.nan, rng.choice([0.0, 230.0], (n, k, 3)))
    i = np.where(rng.random((n, k, 3)) < 0.1, np.nan, rng.uniform(0, 20, (n, k, 3)))
    i_n = rng.uniform(0, 20, (n, k))
    s_rep = np.where(
        rng.random((n, k)) < 0.5, (np.nan_to_num(v) * np.nan_to_num(i)).sum(2), rng.uniform(0, 9e3, (n, k))
    )
    status = rng.choice([0, 1, 2, 8, 32], (n, k)).astype(np.int64)
    present = rng.random((n, k)) < 0.8
    phases = rng.choice([1, 3], n).astype(np.int64)
    has_pv = rng.random(n) < 0.5
    peer = rng.uniform(0.2, 2.0, (n, t))
    args = (imp, exp, flags, v, i, i_n, s_rep, status, present, phases, has_pv, peer)
    got = ktm.meter_indicators(*args, window=3)
    want = naive.meter_indicators(*args, window=3)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(seed=seeds(), n=st.integers(1, 3), blocks=st.integers(1, 7), block=st.integers(1, 4))
def test_change_point_matches_brute_force(seed: int, n: int, blocks: int, block: int) -> None:
    rng = np.random.default_rng(seed)
    e = _series(rng, n, blocks * block + 1)
    peer = rng.uniform(0.1, 2.0, e.shape)
    np.testing.assert_allclose(
        ktp.change_point(e, peer, block=block), naive.change_point(e, peer, block=block), rtol=1e-9, atol=1e-9
    )


@SETTINGS
@given(seed=seeds(), n=st.integers(1, 3), days=st.integers(1, 3), day=st.integers(8, 12))
def test_peer_deviation_and_localisation_match_reference(seed: int, n: int, days: int, day: int) -> None:
    rng = np.random.default_rng(seed)
    e = _series(rng, n, days * day, nan_share=0.3)
    if n > 1:
        e[0, :] = 3.0  # a constant series: correlation 0 by convention
    peer = rng.uniform(0.1, 2.0, e.shape)
    np.testing.assert_allclose(
        ktp.peer_deviation(e, peer, day=day), naive.peer_deviation(e, peer, day=day), rtol=1e-9, atol=1e-9
    )
    ntl = _series(rng, 2, days * day)
    tx_of = rng.integers(0, 2, n).astype(np.int64)
    np.testing.assert_allclose(
        ktp.localisation(e, ntl, tx_of), naive.localisation(e, ntl, tx_of), rtol=1e-9, atol=1e-9
    )


def test_change_point_finds_the_dip() -> None:
    peer = np.ones((1, 40))
    e = np.full((1, 40), 100.0) + np.random.default_rng(0).normal(0, 2, (1, 40))
    e[0, 16:28] *= 0.5
    z, drop, level, a, b = ktp.change_point(e, peer, block=4)[0]
    assert (a, b) == (4, 7) and 0.45 < drop < 0.55 and z > 10 and 95 < level < 105


def test_peer_profiles_fall_back_to_the_class() -> None:
    e = np.array([[1.0, 3.0]] * 3 + [[2.0, 2.0]] * 2 + [[5.0, 5.0]])
    cls = np.array([0, 0, 0, 1, 1, 0], np.int64)
    tx_of = np.array([0, 0, 0, 0, 1, 1], np.int64)
    prof = ktp.peer_profiles(e, cls, tx_of, np.array([False] * 5 + [True]), min_peers=3)
    np.testing.assert_allclose(prof[0], [0.5, 1.5])  # three local class-0 peers
    np.testing.assert_allclose(prof[3], [1.0, 1.0])  # class 1 has one per transformer: class-wide
    np.testing.assert_allclose(prof[5], [0.5, 1.5])  # excluded from profiles, but still gets one
