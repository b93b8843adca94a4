"""Scheduling rules: RTU wire-time estimates, staggered phases, the per-meter circuit breaker
and its table, the bus-budget warning, status-change events and the outbox summary."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from edge.config import MeterConfig
from edge.delivery import BreakerEvent, BreakerState, breaker_retry_delay, next_breaker_state
from edge.events import StatusWatch
from edge.outbox import Outbox
from edge.poller import Poller
from edge.scheduler import Breaker, Decision, rtu_read_seconds, stagger_offsets
from protocols.planner import Read
from protocols.reading import MeterStatus, Quality, Reading


def test_80_registers_at_9600_baud_take_about_0_2_s() -> None:
    t = rtu_read_seconds(Read(4, 0, 80), 9600, parity="E")
    assert 0.19 < t < 0.21
    assert rtu_read_seconds(Read(4, 0, 80), 19200, parity="E") == pytest.approx(t / 2)
    assert rtu_read_seconds(Read(4, 0, 80), 9600, parity="N") < t  # 10 bits a char, not 11


def test_stagger_spreads_links_over_a_fraction_of_the_interval() -> None:
    assert stagger_offsets(4, 10.0, 0.2) == [0.0, 0.5, 1.0, 1.5]
    assert stagger_offsets(3, 10.0, 0.0) == [0.0, 0.0, 0.0]
    assert stagger_offsets(0, 10.0, 0.1) == []
    with pytest.raises(ValueError, match="fraction"):
        stagger_offsets(2, 10.0, 1.0)


def test_breaker_table() -> None:
    assert next_breaker_state(BreakerState.CLOSED, BreakerEvent.FAILURE) is BreakerState.CLOSED
    assert next_breaker_state(BreakerState.CLOSED, BreakerEvent.TRIP) is BreakerState.OPEN
    assert next_breaker_state(BreakerState.OPEN, BreakerEvent.RETRY_DUE) is BreakerState.HALF_OPEN
    assert next_breaker_state(BreakerState.HALF_OPEN, BreakerEvent.FAILURE) is BreakerState.OPEN
    assert next_breaker_state(BreakerState.HALF_OPEN, BreakerEvent.SUCCESS) is BreakerState.CLOSED


def test_retry_waits_grow_to_the_cap_with_jitter() -> None:
    rng = random.Random(7)
    waits = [breaker_retry_delay(n, base=10, cap=300, rng=rng) for n in range(1, 10)]
    assert waits[:5] == sorted(waits[:5]), "waits must grow until the cap"
    assert max(waits) <= 300 and waits[-1] == 300
    assert 8 <= waits[0] <= 12
    with pytest.raises(ValueError, match="opens"):
        breaker_retry_delay(0, base=1, cap=2)


def test_a_dead_meter_is_skipped_then_probed_with_growing_waits() -> None:
    b = Breaker(threshold=3, base_s=10, cap_s=100, rng=random.Random(1))
    t = 0.0
    for _ in range(2):
        assert b.decide(t) is Decision.POLL
        assert b.record(False, t) is BreakerState.CLOSED
    assert b.record(False, t) is BreakerState.OPEN  # the third failure trips it
    first_wait = b.retry_at - t
    assert b.decide(t + first_wait - 0.01) is Decision.SKIP
    t += first_wait
    assert b.decide(t) is Decision.PROBE
    assert b.record(False, t) is BreakerState.OPEN  # one failed probe re-opens at once
    assert b.retry_at - t > first_wait * 1.3
    t = b.retry_at
    assert b.decide(t) is Decision.PROBE
    assert b.record(True, t) is BreakerState.CLOSED
    assert (b.failures, b.opens) == (0, 0)
    assert b.skipped == 1


def test_success_resets_the_failure_count() -> None:
    b = Breaker(threshold=2)
    b.record(False, 0)
    b.record(True, 0)
    assert b.record(False, 0) is BreakerState.CLOSED


def test_a_bus_that_cannot_carry_its_plan_warns_at_start(caplog: pytest.LogCaptureFixture) -> None:
    meters = [MeterConfig(id=f"M{i}", map="sdm630", transport="rtu", serial_port="/dev/null",
                          baudrate=9600, unit_id=i + 1) for i in range(40)]
    with caplog.at_level(logging.WARNING, logger="wattrail.edge.poller"):
        p = Poller(meters, interval_s=5.0)
    name = "rtu:///dev/null"
    assert p.stats.link_planned_s[name] > 5.0  # 40 x ~0.15 s
    assert name in p.stats.over_budget
    assert "more than the 5.00 s poll interval" in caplog.text
    caplog.clear()
    p2 = Poller(meters[:10], interval_s=5.0)
    assert p2.stats.over_budget == {}
    assert caplog.text == ""


def test_status_changes_become_events_once() -> None:
    w = StatusWatch()
    r = Reading("M1", 1000, status=0)
    assert w.changes([r]) == []
    opened = Reading("M1", 2000, status=MeterStatus.COVER_OPEN | MeterStatus.POWER_FAIL)
    ev = w.changes([opened])
    assert [(e["event"], e["flags"]) for e in ev] == [("tamper", ["COVER_OPEN"]),
                                                     ("alarm", ["POWER_FAIL"])]
    assert w.changes([Reading("M1", 3000, status=opened.status)]) == []  # still open: quiet
    # a silent meter has no status: not a recovery
    assert w.changes([Reading("M1", 4000, quality=Quality.COMMS_LOST)]) == []
    ev = w.changes([Reading("M1", 5000, status=MeterStatus.COVER_OPEN)])
    assert [(e["event"], e["flags"]) for e in ev] == [("cleared", ["POWER_FAIL"])]


def test_outbox_summary_and_inspect(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with pytest.raises(FileNotFoundError, match="no outbox"):
        Outbox.inspect(path)
    with Outbox(path) as ob:
        for seq in (1, 2, 3):
            ob.append(seq, b"x" * 10, created_ms=1000 * seq)
        ob.confirm(1, ob.envelope_hash(1) or b"")
    s = Outbox.inspect(path)
    assert (s.depth, s.size_bytes, s.head_seq, s.confirmed_seq) == (2, 20, 3, 1)
    assert (s.oldest_seq, s.oldest_created_ms) == (2, 2000)
