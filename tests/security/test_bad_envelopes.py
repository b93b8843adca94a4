"""Security campaign, bounded: bad envelopes of nine kinds mixed into a stream of valid ones
through the real pipeline (TLS Mosquitto, a real `wattrail ingest` process, TimescaleDB on a
private services instance); wattrail/chaos/bad_envelopes.py builds and checks them, `wattrail chaos
run bad-envelopes --scale full` runs 10,000 of them among 1,000,000 valid readings. Every bad
one must be quarantined with the right reason, replays acknowledged and not stored twice, and
not one valid reading rejected."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from wattrail.chaos.bad_envelopes import EXPECTED_REASON, KINDS, scenario_bad_envelopes
from wattrail.chaos.fleet import SCALES
from wattrail.chaos.results import table
from wattrail.chaos.services import Services

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SMALL = SCALES["small"]


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    s = Services(tmp_path_factory.mktemp("svc-security"))
    try:
        yield s
    finally:
        s.down()


def test_bad_envelopes_are_all_quarantined_and_no_valid_reading_is_rejected(
    svc: Services, tmp_path: Path,
) -> None:
    r = scenario_bad_envelopes(svc, SMALL, tmp_path)
    f = r.figures
    assert f["bad_sent"] == SMALL.bad_messages
    # every kind was exercised, evenly
    assert all(f[f"kind_{k}"] >= SMALL.bad_messages // len(KINDS) for k in KINDS), f
    # every bad message quarantined once, with its reason; nothing else quarantined
    expected = SMALL.bad_messages - f["replays"]
    assert sum(f[f"kind_{k}"] for k, v in EXPECTED_REASON.items() if v) == expected
    assert (f["to_quarantine"], f["right_reason"]) == (expected, expected), table([r])
    assert (f["wrong_reason"], f["not_quarantined"], f["quarantined_unexpectedly"],
            f["quarantined_twice"]) == (0, 0, 0, 0), table([r])
    assert r.quarantined == expected
    # no valid envelope or reading rejected, none stored twice (replays were duplicates),
    # nothing foreign stored (check() compares the stored bytes with the signed set)
    n_b = SMALL.bad_messages // len(KINDS) + 1
    assert r.expected == (SMALL.bad_valid_envelopes + n_b) * SMALL.bad_readings
    assert (r.stored, r.lost, r.duplicated, r.gaps) == (r.expected, 0, 0, 0), table([r])
    assert r.ok
