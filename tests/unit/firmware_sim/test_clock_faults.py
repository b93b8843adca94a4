"""The accelerated clock and fault injection: deterministic, and doing what they say."""

from __future__ import annotations

from collections import Counter

import pytest

from firmware_sim.clock import SimClock
from firmware_sim.faults import CLOCK_INVALID_AFTER_S, Action, FaultPlan, MeterFaults, plan_faults
from protocols.reading import MeterStatus, Reading


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_accelerated_clock_runs_speed_times_real_time():
    real = FakeMonotonic()
    clock = SimClock(1_700_000_000.0, speed=60.0, monotonic=real)
    assert clock.now() == 1_700_000_000.0
    real.t += 2.5
    assert clock.now() == pytest.approx(1_700_000_150.0)
    assert clock.real_seconds_until(1_700_000_210.0) == pytest.approx(1.0)
    with pytest.raises(RuntimeError, match="manual=True"):
        clock.step(1.0)


def test_manual_clock_moves_only_when_stepped():
    clock = SimClock(100.0, manual=True)
    assert clock.now() == 100.0
    assert clock.step(59.5) == 159.5
    assert clock.now_ms() == 159_500
    with pytest.raises(ValueError, match="backwards"):
        clock.step(-1.0)


def test_lock_step_clock_lands_exactly_on_each_instant():
    # start + k x 900 by repeated float steps would drift; advance_to lands on the instant
    clock = SimClock(1_767_225_600.0, manual=True)
    for k in range(1, 200):
        assert clock.advance_to(1_767_225_600.0 + k * 900) == 1_767_225_600.0 + k * 900
    assert clock.advance_to(clock.now()) == clock.now()  # already there: nothing moves
    with pytest.raises(ValueError, match="backwards"):
        clock.advance_to(clock.now() - 1)


def test_speed_must_be_positive():
    with pytest.raises(ValueError, match="speed"):
        SimClock(0.0, speed=0.0)


def test_fault_decisions_are_deterministic_and_follow_probabilities():
    mf = MeterFaults(timeout_prob=0.2, exception_prob=0.1, slow_prob=0.3)
    a = FaultPlan(7, {"M1": mf, "M2": mf})
    b = FaultPlan(7, {"M1": mf, "M2": mf})
    seq_a = [a.decide("M1")[0] for _ in range(4000)]
    assert seq_a == [b.decide("M1")[0] for _ in range(4000)]
    counts = Counter(seq_a)
    assert counts[Action.TIMEOUT] / 4000 == pytest.approx(0.2, abs=0.03)
    assert counts[Action.EXCEPTION] / 4000 == pytest.approx(0.1, abs=0.03)
    assert counts[Action.SLOW] / 4000 == pytest.approx(0.3, abs=0.03)
    assert counts[Action.DROP] == counts[Action.CORRUPT] == 0
    other = FaultPlan(8, {"M1": mf})
    assert [other.decide("M1")[0] for _ in range(4000)] != seq_a  # the seed matters
    assert a.decide("nobody") == (Action.REPLY, None)


def test_rollover_wraps_registers():
    plan = FaultPlan(1, {"M": MeterFaults(rollover_wh=1_000_000.0)})
    rd = Reading("M", 0, import_wh=1_000_250.0, export_wh=10.0)
    out = plan.apply_reading(rd, 0.0)
    assert out.import_wh == pytest.approx(250.0) and out.export_wh == 10.0


def test_clock_drift_moves_the_time_stamp_and_flags_it():
    plan = FaultPlan(1, {"M": MeterFaults(clock_drift_ppm=500.0)})
    day = Reading("M", 86_400_000)
    assert plan.apply_reading(day, 0.0).ts_ms == 86_400_000 + 43_200  # 500 ppm of a day
    assert not plan.apply_reading(day, 0.0).status & MeterStatus.CLOCK_INVALID
    later_s = CLOCK_INVALID_AFTER_S / 500e-6 + 86_400
    late = plan.apply_reading(Reading("M", int(later_s * 1000)), 0.0)
    assert late.status & MeterStatus.CLOCK_INVALID


def test_plan_faults_is_deterministic_and_sized():
    ids = [f"M{i}" for i in range(200)]
    regs = {m: 5e6 for m in ids}
    a = plan_faults(3, ids, 0.25, regs)
    assert len(a.meters) == 50
    assert a.to_dict() == plan_faults(3, ids, 0.25, regs).to_dict()
    assert FaultPlan.from_dict(a.to_dict()).meters == a.meters
    for f in a.meters.values():
        assert f != MeterFaults()
        if f.rollover_wh:
            assert 5e6 < f.rollover_wh < 5e6 + 3e4  # wraps soon after the start
