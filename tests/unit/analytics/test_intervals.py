"""Interval energy from cumulative registers: kernel vs the NumPy reference, and the rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.analytics.kernels import intervals as ki
from cloud.analytics.kernels.checks import KernelInputError
from tests import analytics_naive as naive
from tests.unit.analytics.strategies import SETTINGS, seeds

STEP = 900


def _random_rows(seed: int, meters: int, n_steps: int) -> tuple[np.ndarray, ...]:
    """Readings with jitter, gaps, NaN, wraps, rollbacks and resets, sorted by (meter, ts)."""
    rng = np.random.default_rng(seed)
    rows_m, rows_t, rows_r, rows_rep = [], [], [], []
    modulus = np.where(rng.random(meters) < 0.5, 5000.0, 0.0)
    for m in range(meters):
        t = np.arange(n_steps + 1) * STEP + rng.integers(-60, 60, n_steps + 1) * (rng.random() < 0.5)
        keep = rng.random(n_steps + 1) > 0.25  # gaps
        t = np.unique(t[keep])
        reg = np.cumsum(rng.uniform(0, 400, len(t))) + rng.uniform(0, 4000)
        if modulus[m]:
            reg = reg % modulus[m]
        reg[rng.random(len(t)) < 0.1] -= 1000.0  # rollbacks
        reg[rng.random(len(t)) < 0.05] = np.nan
        rep = rng.random(len(t)) < 0.05
        rows_m += [m] * len(t)
        rows_t += list(t)
        rows_r += list(reg)
        rows_rep += list(rep)
    return (
        np.array(rows_m, np.int64),
        np.array(rows_t, np.int64),
        np.array(rows_r),
        np.array(rows_rep, bool),
        modulus,
    )


@SETTINGS
@given(
    seed=seeds(), meters=st.integers(1, 4), n_steps=st.integers(1, 12), max_gap=st.sampled_from([1800, 7200])
)
def test_kernel_matches_reference(seed: int, meters: int, n_steps: int, max_gap: int) -> None:
    meter, ts, reg, rep, modulus = _random_rows(seed, meters, n_steps)
    kw = {"t0": 0, "step": STEP, "n_steps": n_steps, "max_gap_s": max_gap, "max_power_w": 1.0e5}
    got = ki.interval_energy(meter, ts, reg, rep, modulus, **kw)
    want = naive.interval_energy(meter, ts, reg, rep, modulus, **kw)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-9, atol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])


def _one(
    regs: list[float],
    replaced: list[bool] | None = None,
    modulus: float = 0.0,
    times: list[int] | None = None,
    max_power_w: float = 2.0e6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(regs)
    ts = np.array(times if times is not None else [k * STEP for k in range(n)], np.int64)
    rep = np.array(replaced or [False] * n)
    e, q, f = ki.interval_energy(
        np.zeros(n, np.int64),
        ts,
        np.array(regs, float),
        rep,
        np.array([modulus]),
        t0=0,
        step=STEP,
        n_steps=int(ts[-1] // STEP),
        max_power_w=max_power_w,
    )
    return e[0], q[0], f[0]


def test_rollover_is_unwrapped_and_flagged() -> None:
    e, q, f = _one([9900.0, 9950.0, 30.0], modulus=10000.0)
    np.testing.assert_allclose(e, [50.0, 80.0])
    assert f.tolist() == [0, ki.FLAG_ROLLOVER] and q.tolist() == [0, 0]


def test_rollback_is_kept_negative_and_flagged() -> None:
    # a wrap would mean 6100 Wh in 15 min = 24 kW, above this meter's 10 kW: a rollback
    e, _, f = _one([5000.0, 5100.0, 1200.0, 1300.0], modulus=10000.0, max_power_w=10_000.0)
    np.testing.assert_allclose(e, [100.0, -3900.0, 100.0])
    assert f.tolist() == [0, ki.FLAG_ROLLBACK, 0]


def test_replacement_counts_from_zero() -> None:
    e, _, f = _one([5000.0, 5100.0, 40.0, 90.0], replaced=[False, False, True, False])
    np.testing.assert_allclose(e, [100.0, 40.0, 50.0])
    assert f.tolist() == [0, ki.FLAG_RESET, 0]


def test_gap_is_interpolated_and_marked_estimated() -> None:
    e, q, _ = _one([0.0, 100.0, 400.0], times=[0, STEP, 4 * STEP])
    np.testing.assert_allclose(e, [100.0, 100.0, 100.0, 100.0])
    assert q.tolist() == [ki.Q_VALID, ki.Q_ESTIMATED, ki.Q_ESTIMATED, ki.Q_ESTIMATED]


def test_long_gap_stays_missing() -> None:
    e, q, _ = _one([0.0, 100.0, 9000.0], times=[0, STEP, 40 * STEP])
    assert e[0] == 100.0 and np.isnan(e[1:]).all() and (q[1:] == ki.Q_MISSING).all()


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"meter": np.zeros(2, np.int32)}, "meter"),
        ({"reg": np.zeros(3)}, "reg"),
        ({"ts_s": np.array([900, 0], np.int64)}, "meter/ts_s"),
        ({"meter": np.array([0, 1], np.int64)}, "meter"),
        ({"reg": np.zeros((2, 2))[:, 0]}, "reg"),
    ],
    ids=["int32-meter", "length-mismatch", "unsorted", "meter-out-of-range", "not-contiguous"],
)
def test_bad_inputs_say_the_fix(kwargs: dict[str, np.ndarray], argument: str) -> None:
    args = {
        "meter": np.zeros(2, np.int64),
        "ts_s": np.array([0, 900], np.int64),
        "reg": np.zeros(2),
        "replaced": np.zeros(2, bool),
        "modulus": np.zeros(1),
    }
    args.update(kwargs)
    with pytest.raises(KernelInputError) as err:
        ki.interval_energy(**args, t0=0, step=STEP, n_steps=1)
    assert err.value.argument == argument
    assert any(w in str(err.value) for w in ("astype", "expected", "sort", "must lie", "ascontiguousarray"))
