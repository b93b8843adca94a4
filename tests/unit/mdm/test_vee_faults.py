"""The fault injector's truth on tiny arrays (each fault alone, then properties over random
arrays and plans), and the VEE evaluation on a slice of real households
(../shared/realdata; skips, saying why, without it)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattrail.evaluation import scenarios as realdata
from wattrail.evaluation import vee
from wattrail.evaluation.vee_faults import ABSENT, CATCHES, Fault, FaultPlan, inject

NONE = FaultPlan.empty()


def _tiny(days: int = 10, slots: int = 16, meters: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A ramp per meter (every value different, all > 0) and the day of each interval."""
    n = days * slots
    x = np.tile(0.1 + 0.01 * np.arange(n, dtype=float), (meters, 1))
    return x, np.repeat(np.arange(days, dtype=np.int64), slots)


def _cells(truth: np.ndarray, *faults: Fault) -> list[int]:
    return np.flatnonzero(np.isin(truth[0], faults)).tolist()


def test_no_plan_changes_nothing() -> None:
    x, day = _tiny()
    inj = inject(x, day, 1, NONE)
    assert np.array_equal(inj.reported, x) and not inj.truth.any() and not inj.events
    assert np.allclose(np.diff(inj.register_at, axis=1), x)


def test_a_spike_is_one_multiplied_interval_and_the_register_does_not_see_it() -> None:
    x, day = _tiny()
    inj = inject(x, day, 3, replace(NONE, spikes=1))
    (at,) = _cells(inj.truth, Fault.SPIKE)
    assert 5.0 <= inj.reported[0, at] / x[0, at] <= 100.0
    others = np.arange(x.shape[1]) != at
    assert np.array_equal(inj.reported[0, others], x[0, others])
    assert np.allclose(np.diff(inj.register_at[0]), x[0])  # the register counted the truth


def test_a_stuck_register_reports_zeros_then_all_of_it_at_once() -> None:
    x, day = _tiny()
    inj = inject(x, day, 5, replace(NONE, stuck=1))
    zeros = _cells(inj.truth, Fault.STUCK_ZERO)
    (catch,) = _cells(inj.truth, Fault.STUCK_CATCHUP)
    assert 2 <= len(zeros) <= 8 and zeros == list(range(zeros[0], catch))
    assert (inj.reported[0, zeros] == 0).all()
    span = slice(zeros[0], catch + 1)
    assert inj.reported[0, span].sum() == pytest.approx(x[0, span].sum())  # energy kept
    assert np.allclose(np.diff(inj.register_at[0]), inj.reported[0])  # the register is stuck too


def test_a_rollback_is_negative_and_so_is_the_register_step() -> None:
    x, day = _tiny()
    inj = inject(x, day, 2, replace(NONE, rollbacks=1))
    (at,) = _cells(inj.truth, Fault.ROLLBACK)
    assert inj.reported[0, at] < 0 and (inj.reported[0] < 0).sum() == 1
    assert inj.register_at[0, at + 1] < inj.register_at[0, at]


def test_a_clock_step_skips_shifts_and_stamps_twice() -> None:
    x, day = _tiny(days=12, slots=24)
    inj = inject(x, day, 11, replace(NONE, clock=1))
    skip, shift = _cells(inj.truth, Fault.CLOCK_SKIP), _cells(inj.truth, Fault.CLOCK_SHIFT)
    dup = _cells(inj.truth, Fault.CLOCK_DUP)
    k = len(skip)
    assert k in (1, 2) and len(dup) == k and skip[-1] + 1 == shift[0] and shift[-1] + 1 == dup[0]
    a = skip[0]
    assert np.isnan(inj.reported[0, skip]).all()
    moved = np.array(shift + dup)
    assert np.array_equal(inj.reported[0, moved], x[0, moved - k])  # k slots late on the clock
    assert inj.reported[0, a:dup[-1] + 1][k:].sum() == pytest.approx(x[0, a:dup[0]].sum())


def test_a_missing_day_is_one_whole_local_day_and_its_register_is_not_read() -> None:
    x, day = _tiny()
    inj = inject(x, day, 4, replace(NONE, missing_days=1))
    cells = _cells(inj.truth, Fault.MISSING_DAY)
    assert len(np.unique(day[cells])) == 1 and len(cells) == (day == day[cells[0]]).sum()
    assert np.isnan(inj.reported[0, cells]).all()
    inner = np.arange(cells[0] + 1, cells[-1] + 1)
    assert np.isnan(inj.register_at[0, inner]).all()
    # the register across the hole still holds the day's energy (what LIKE_DAY_SCALED uses)
    got = inj.register_at[0, cells[-1] + 1] - inj.register_at[0, cells[0]]
    assert got == pytest.approx(x[0, cells].sum())


def test_empty_and_dead_meters_get_no_faults() -> None:
    x, day = _tiny(meters=3)
    x[1] = 0.0
    x[2, ::2] = np.nan
    inj = inject(x, day, 9)
    assert inj.eligible.tolist() == [True, False, False]
    assert not inj.truth[1:].any() and np.array_equal(inj.reported[1:], x[1:], equal_nan=True)
    assert {e.meter for e in inj.events} == {0}


def test_every_fault_is_meant_for_a_rule() -> None:
    assert set(CATCHES) == set(Fault) - {Fault.CLEAN}
    assert all(CATCHES[f] for f in CATCHES)


@st.composite
def _arrays(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, FaultPlan, int]:
    meters = draw(st.integers(1, 3))
    days = draw(st.integers(3, 12))
    slots = draw(st.sampled_from([8, 24, 48]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.gamma(1.0, 0.3, (meters, days * slots))
    x[rng.random(x.shape) < draw(st.sampled_from([0.0, 0.02]))] = np.nan
    x[rng.random(x.shape) < 0.1] = 0.0
    plan = FaultPlan(missing=draw(st.integers(0, 4)), gaps=draw(st.integers(0, 2)),
                     missing_days=draw(st.integers(0, 1)), stuck=draw(st.integers(0, 2)),
                     spikes=draw(st.integers(0, 3)), rollbacks=draw(st.integers(0, 1)),
                     clock=draw(st.integers(0, 1)), zero_days_share=draw(st.sampled_from([0.0, 1.0])),
                     high_days=draw(st.integers(0, 1)), low_days=draw(st.integers(0, 1)),
                     buffer=draw(st.integers(1, 4)))
    return x, np.repeat(np.arange(days, dtype=np.int64), slots), plan, draw(st.integers(0, 10**6))


@settings(max_examples=150, deadline=None)
@given(_arrays())
def test_the_truth_covers_every_change_and_only_changes(
        case: tuple[np.ndarray, np.ndarray, FaultPlan, int]) -> None:
    x, day, plan, seed = case
    inj = inject(x, day, seed, plan)
    clean = inj.truth == Fault.CLEAN
    same = (inj.reported == x) | (np.isnan(inj.reported) & np.isnan(x))
    assert same[clean].all()  # an untouched interval is the source's value
    assert clean[inj.source_missing].all() and np.isnan(inj.reported[inj.source_missing]).all()
    absent = np.isnan(inj.reported) & ~inj.source_missing
    assert np.array_equal(absent, np.isin(inj.truth, ABSENT))
    assert np.array_equal(inj.reported < 0, inj.truth == Fault.ROLLBACK)
    assert not inj.truth[~inj.eligible].any()
    # faults never touch each other: one event per labelled cell, no cell in two events
    covered = np.zeros(x.shape, dtype=int)
    for e in inj.events:
        covered[e.meter, e.start:e.start + e.length] += 1
    assert covered.max(initial=0) <= 1 and np.array_equal(covered == 1, ~clean)
    # where the register was read on both sides, a clean interval's step is its energy
    step = np.diff(inj.register_at, axis=1)
    ok = clean & ~inj.source_missing & ~np.isnan(step)
    assert np.allclose(step[ok], x[ok])
    again = inject(x, day, seed, plan)
    assert np.array_equal(again.reported, inj.reported, equal_nan=True)
    assert np.array_equal(again.truth, inj.truth)


@pytest.fixture(scope="module")
def london() -> vee.Dataset:
    try:
        return vee.dataset("lcl", meters=16)
    except realdata.RealDataMissing as exc:
        pytest.skip(str(exc))


def test_the_evaluation_on_real_households(london: vee.Dataset) -> None:
    # seed 3 is a tuning seed: the bounds below were measured on seeds 1-3 (16 London
    # households: SPIKE precision 0.50-0.56, recall 0.29-0.33; LINEAR MAE 0.56-0.62 of the
    # meter mean's) and set with margin
    res = vee.evaluate(london, 3)
    rules = res["rules"]
    for rule in ("MISSING", "GAP", "NEGATIVE"):
        r = rules[rule]
        assert (r["precision"], r["recall"], r["fpr"]) == (1.0, 1.0, 0.0), (rule, r)
    assert rules["ZERO_RUN"]["recall"] == 1.0
    assert rules["SPIKE"]["precision"] >= 0.35 and rules["SPIKE"]["recall"] >= 0.2, rules["SPIKE"]
    assert rules["HIGH_LOW"]["precision"] >= 0.4, rules["HIGH_LOW"]
    # what an interval export cannot reveal is reported as not run, with its faults present
    for rule in ("STALE", "CLOCK", "CONFLICT", "SUM_CHECK"):
        assert not rules[rule]["ran"] and rules[rule]["why_not"]
    assert rules["CLOCK"]["positives"] > 0 and rules["STALE"]["positives"] > 0
    export, registers = res["estimation"]["export"], res["estimation"]["registers"]
    lin = export["LINEAR"]
    assert lin["LINEAR"]["mae"] < 0.8 * lin["meter_mean"]["mae"] and lin["LINEAR"]["mae"] < lin["hold"]["mae"]
    like, scaled = export["LIKE_DAY"], registers["LIKE_DAY_SCALED"]
    assert like["LIKE_DAY"]["mae"] < like["meter_mean"]["mae"]
    # scaling to the register difference takes most of the energy error out of long gaps
    assert scaled["LIKE_DAY_SCALED"]["run_energy_err"] < 0.5 * like["LIKE_DAY"]["run_energy_err"]
    assert export["NONE"]["n"] == 0 and registers["NONE"]["n"] == 0
