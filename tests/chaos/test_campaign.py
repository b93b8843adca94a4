"""The bounded fault campaign (small scale) through the real pipeline: signed envelopes from
real Publisher + Outbox agents, the real TLS Mosquitto, real `wattrail ingest` processes and
TimescaleDB on a private services instance. Each scenario injects its fault and then compares
the database with what was signed (wattrail/chaos/; `wattrail chaos run` runs the same)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from wattrail.chaos.delivery import (
    scenario_agent_kill,
    scenario_broker_kill,
    scenario_db_crash,
    scenario_ingestor_kill,
    scenario_partition,
)
from wattrail.chaos.edge_faults import (
    clock_collisions,
    scenario_clock_jump,
    scenario_disk_full,
    scenario_outbox_full,
)
from wattrail.chaos.fleet import SCALES
from wattrail.chaos.results import Result, table
from wattrail.chaos.services import Services

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SMALL = SCALES["small"]


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    s = Services(tmp_path_factory.mktemp("svc-chaos"))
    try:
        yield s
    finally:
        s.down()


def assert_exact(r: Result) -> None:
    assert r.expected > 0
    assert (r.stored, r.lost, r.duplicated, r.quarantined, r.gaps) == (r.expected, 0, 0, 0, 0), \
        table([r])


def test_broker_sigkilled_mid_stream_loses_and_duplicates_nothing(svc: Services,
                                                                    tmp_path: Path) -> None:
    r = scenario_broker_kill(svc, SMALL, tmp_path)
    assert_exact(r)
    assert r.expected == SMALL.agents * SMALL.envelopes * SMALL.readings
    assert r.figures["kills_mid_stream"] >= 1, "every kill came after the stream: no fault tested"


def test_agent_sigkilled_with_torn_outbox_loses_nothing(svc: Services, tmp_path: Path) -> None:
    r = scenario_agent_kill(svc, SMALL, tmp_path)
    assert_exact(r)
    assert r.expected == SMALL.agents * SMALL.envelopes * SMALL.readings


def test_partition_backlog_drains_in_order(svc: Services, tmp_path: Path) -> None:
    r = scenario_partition(svc, SMALL, tmp_path)
    assert_exact(r)
    assert r.figures["out_of_order"] == 0
    assert r.figures["stored_during_partition"] == 0, "the black hole let traffic through"
    # the agents noticed the silent link by their keepalive and connected again after healing
    assert r.figures["reconnects_after_heal"] >= SMALL.agents, r.figures
    # how fast the backlog drains (x real time) is a figure the campaign reports, not a test
    # assertion: it measures the machine as much as the code (bench/ holds the speed targets)


def test_full_outbox_refuses_with_alarm_and_loses_nothing_signed(svc: Services,
                                                                 tmp_path: Path) -> None:
    r = scenario_outbox_full(svc, SMALL, tmp_path)
    assert_exact(r)
    assert r.figures["refused_cycles"] == SMALL.refused
    assert r.figures["alarms_on_events"] == SMALL.refused
    assert r.figures["signed_envelopes"] == SMALL.outbox_limit + 1  # incl. one after the drain
    assert r.figures["accepted_after_drain"] == 1


def test_ingestors_dying_mid_batch_and_between_commit_and_ack(svc: Services, tmp_path: Path) -> None:
    r = scenario_ingestor_kill(svc, SMALL, tmp_path)
    assert_exact(r)
    assert r.figures["sigkill"] == SMALL.ingestor_kills
    # the injected deaths really happened at the moments they claim (exit codes 71 and 70)
    assert r.figures["mid_batch"] >= 1 and r.figures["after_commit"] >= 1, r.figures


def test_database_crash_keeps_every_acknowledged_reading(svc: Services, tmp_path: Path) -> None:
    r = scenario_db_crash(svc, SMALL, tmp_path)
    assert_exact(r)
    assert r.figures["crashes_mid_stream"] >= 1
    assert r.figures["acked_before_crash"] > 0, "nothing was acknowledged before the crash"
    assert r.figures["acked_then_missing"] == 0


def test_database_disk_full_stops_acks_and_recovers_by_itself(svc: Services, tmp_path: Path) -> None:
    r = scenario_disk_full(svc, SMALL, tmp_path)
    assert_exact(r)
    # what was sent while the disk was full stayed unacknowledged (a batch may still squeeze
    # into free space left in existing pages, so "stored" is reported, not required to be 0)
    assert r.figures["unacked_while_full"] > 0, "the disk never refused a write"
    assert r.figures["ingestor_alive_while_full"] == 1


def test_agent_clock_jumps_are_flagged_and_seq_order_holds(svc: Services, tmp_path: Path) -> None:
    r = scenario_clock_jump(svc, SMALL, tmp_path)
    assert_exact(r)
    assert r.figures["jumps"] == 2 and r.figures["flagged_as_expected"] == 1, r.notes
    assert r.figures["flagged_readings"] == 2 * SMALL.readings
    assert r.figures["sent_at_backwards"] == 1  # the -1 h step, stored in seq order regardless
    # readings stamped with an instant the agent had already used are kept aside, not dropped
    assert r.figures["reading_conflicts"] == clock_collisions(SMALL) > 0
