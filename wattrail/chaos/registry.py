"""Every scenario of the campaign by its name on the command line (`wattrail chaos run NAME`)."""

from __future__ import annotations

from collections.abc import Callable

from wattrail.chaos.bad_envelopes import scenario_bad_envelopes
from wattrail.chaos.delivery import (
    scenario_agent_kill,
    scenario_broker_kill,
    scenario_db_crash,
    scenario_ingestor_kill,
    scenario_partition,
)
from wattrail.chaos.edge_faults import scenario_clock_jump, scenario_disk_full, scenario_outbox_full
from wattrail.chaos.results import Result

SCENARIOS: dict[str, Callable[..., Result]] = {
    "broker-kill": scenario_broker_kill,
    "agent-kill": scenario_agent_kill,
    "partition": scenario_partition,
    "outbox-full": scenario_outbox_full,
    "ingestor-kill": scenario_ingestor_kill,
    "db-crash": scenario_db_crash,
    "disk-full": scenario_disk_full,
    "clock-jump": scenario_clock_jump,
    "bad-envelopes": scenario_bad_envelopes,
}
