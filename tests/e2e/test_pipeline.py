"""The whole pipeline, end to end, checked through the API.

A small deterministic scenario (120 customer meters on 2 transformers, one simulated day at
15-minute polls, no injected faults, two known thieves from 06:00: a bypass and an h1 at
a = 0.3) runs
through the real parts, wired by the demo (wattrail/demo/run.py `DemoRun`): simulator (Modbus
TCP) -> edge agents (sign, outbox) -> TLS Mosquitto (mTLS) -> `wattrail ingest` subprocesses ->
TimescaleDB -> `cloud.analytics.batch.analyze`. Then a grid engineer's token asks the real API
(uvicorn on a free port):

- each transformer's loss report equals the balance computed here from the stored readings:
  (balance meter import - export) minus the customers' (import - export), register deltas
  between the run's first and last instants;
- the theft suspects' top ranks hold the known thieves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from rich.console import Console

from cloud.api.config import Settings
from cloud.api.main import create_app
from cloud.api.tokens import create_token
from cloud.store.migrate import migrate
from tests.conftest import Services, create_database, drop_database
from tests.support.api_server import serve_api
from wattrail.demo.run import DemoRun
from wattrail.demo.setup import DemoOptions

# the timeout only catches a hang (the module's pipeline runs in the first test's setup)
pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(1200)]

METERS = 120  # -> 2 transformers (about 100 customers each, as the simulator generates)
# (customer index, kind, params): clear cases, active from 06:00 to the end of the day
# (customer 95, a single-phase SDM120 that reports no neutral current, was tried with a neutral
# tamper: no indicator can see that on this model, and it was not ranked)
THIEVES = ((7, "bypass", {}), (30, "h1", {"a": 0.3}))
TOP = 5  # every known thief ranks within the top TOP of the 120 customer meters
# The API's balance comes from the analytics' interval sums of readings snapped to instants;
# the hand balance from register deltas between each meter's first and last valid readings.
# Both read the same register values, so they differ only by float rounding: 1 Wh (of
# hundreds of kWh).
TOL_WH = 1.0


@pytest.fixture(scope="module")
def pipeline(services: Services, template_db: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[dict[str, Any]]:
    """Run the scenario once; yield the DSN, the demo's ground truth and the meters' ids."""
    name = create_database(services, template_db, "t_e2e")
    dsn = services.dsn_for(name)
    work = tmp_path_factory.mktemp("e2e")
    try:
        with psycopg.connect(dsn) as conn:
            migrate(conn)
        # the demo's lock-step clock: every poll lands on its instant however loaded the machine;
        # no injected field faults (the demo's default is 2 % of meters), the known thefts
        # from 06:00 on (a change from the meter's own morning, as a theft starts in the field)
        opt = DemoOptions(meters=METERS, days=1.0, seed=7, ingestors=1,
                          workdir=work, thefts=THIEVES, thefts_from_h=6.0, fault_rate=0.0)
        (work / "outbox").mkdir(parents=True)
        svc = {"mqtt_host": services.mqtt_host, "mqtt_port": services.mqtt_port,
               "ca_cert": str(services.ca_cert)}
        demo = DemoRun(opt, svc, services.tls_dir.parent, dsn, Console(quiet=True))
        try:
            demo.prepare()
            asyncio.run(demo.stream())
            demo.analyze_and_report()
        finally:
            demo.shutdown()
        assert demo.sim is not None
        customers = demo.sim.grid.customers
        yield {"dsn": dsn, "work": work, "notes": demo.notes,
               "thieves": {customers[c].meter_id: kind for c, kind, _ in THIEVES}}
    finally:
        drop_database(services, name)


@pytest.fixture(scope="module")
def api(pipeline: dict[str, Any]) -> Iterator[httpx.Client]:
    """The real API on a free loopback port, and a client holding an engineer's token."""
    dsn = pipeline["dsn"]
    with psycopg.connect(dsn) as conn:
        token = create_token(conn, "engineer", "e2e").secret
    work: Path = pipeline["work"]
    settings = Settings(dsn=dsn, ca_cert=work / "pki" / "ca.crt",  # type: ignore[call-arg]
                        rate_limit_per_s=10_000.0, rate_limit_burst=10_000)
    with serve_api(create_app(settings), "e2e-api") as base, \
            httpx.Client(base_url=base, timeout=30,
                         headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def _net_delta(conn: psycopg.Connection[Any], meter: str, start: datetime, end: datetime) -> float:
    """Net energy (import - export) the meter registered over [start, end]: the register delta
    between its first and last valid readings that snap to the period's instants (within half a
    step, as the analytics snap them). Registers are cumulative, so a missing reading in between
    (a comms-lost poll) changes nothing: the analytics spread the delta across such gaps too."""
    got = conn.execute(
        "SELECT (array_agg(import_wh ORDER BY ts))[1], (array_agg(export_wh ORDER BY ts))[1], "
        "(array_agg(import_wh ORDER BY ts DESC))[1], (array_agg(export_wh ORDER BY ts DESC))[1] "
        "FROM readings WHERE meter_id = %s AND quality = 0 "
        "AND ts >= %s - interval '450 seconds' AND ts < %s + interval '450 seconds'",
        [meter, start, end]).fetchone()
    assert got is not None and got[0] is not None, f"{meter} has no valid reading in the period"
    i0, e0, i1, e1 = (float(v or 0.0) for v in got)
    return (i1 - i0) - (e1 - e0)


def _hand_balance(dsn: str, transformer: str, start: datetime, end: datetime) -> tuple[float, float]:
    """(energy in, energy out) of one transformer over [start, end] from the stored readings."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT balance_meter_id FROM transformers WHERE transformer_id = %s",
                           [transformer]).fetchone()
        assert row is not None and row[0] is not None
        customers = [r[0] for r in conn.execute(
            "SELECT meter_id FROM meters WHERE kind = 'customer' AND transformer_id = %s",
            [transformer])]
        assert len(customers) > 10

        return (_net_delta(conn, row[0], start, end),
                sum(_net_delta(conn, m, start, end) for m in customers))


def test_the_pipeline_stored_a_whole_day(pipeline: dict[str, Any]) -> None:
    with psycopg.connect(pipeline["dsn"]) as conn:
        meters = conn.execute("SELECT count(*) FROM meters").fetchone()
        per_meter = conn.execute("SELECT min(n), max(n) FROM (SELECT count(*) n FROM readings "
                                 "GROUP BY meter_id) m").fetchone()
        valid = conn.execute("SELECT count(*) FILTER (WHERE quality = 0)::float8 / count(*) "
                             "FROM readings").fetchone()
        quarantined = conn.execute("SELECT coalesce(sum(count), 0) FROM quarantine").fetchone()
    assert meters is not None and per_meter is not None and valid is not None
    assert quarantined is not None
    # 120 customers + 2 balance meters + the feeder head; one reading a poll, 96 polls each
    # (a meter that did not answer in time has its poll stored as COMMS_LOST, never dropped)
    assert meters[0] >= METERS + 2
    if per_meter != (96, 96):  # say which polls are missing, and where they stopped
        with psycopg.connect(pipeline["dsn"]) as conn:
            short = conn.execute(
                "SELECT m.meter_id, (SELECT count(*) FROM readings r WHERE "
                "r.meter_id = m.meter_id), (SELECT max(ts) FROM readings r WHERE r.meter_id = "
                "m.meter_id) FROM meters m ORDER BY 2 LIMIT 5").fetchall()
            progress = conn.execute("SELECT * FROM agent_progress").fetchall()
            conflicts = conn.execute("SELECT count(*) FROM reading_conflicts").fetchone()
        pytest.fail(f"readings per meter {per_meter}; fewest: {short}; agent progress: {progress}; "
                    f"reading conflicts: {conflicts}; demo: {pipeline['notes']}")
    assert valid[0] == 1.0  # no faults injected: every poll answered
    assert quarantined[0] == 0


def test_loss_report_equals_the_hand_computed_balance(pipeline: dict[str, Any], api: httpx.Client) -> None:
    page = api.get("/v1/loss", params={"level": "transformer"})
    assert page.status_code == 200, page.text
    reports = page.json()["items"]
    assert len(reports) == 2
    for rep in reports:
        detail = api.get(f"/v1/loss/transformer/{rep['entity_id']}")
        assert detail.status_code == 200, detail.text
        run, loss = detail.json()["run"], detail.json()["loss"]
        start = datetime.fromisoformat(run["period_start"])
        end = datetime.fromisoformat(run["period_end"])
        assert (end - start).total_seconds() == 95 * 900  # first poll .. last poll
        e_in, e_out = _hand_balance(pipeline["dsn"], rep["entity_id"], start, end)
        assert loss["completeness"] == pytest.approx(1.0)
        assert e_in > 100_000  # a transformer's day is hundreds of kWh
        assert loss["energy_in_wh"] == pytest.approx(e_in, abs=TOL_WH)
        assert loss["energy_out_wh"] == pytest.approx(e_out, abs=TOL_WH)
        assert loss["loss_wh"] == pytest.approx(e_in - e_out, abs=2 * TOL_WH)
        assert loss["loss_pct"] == pytest.approx(100 * (e_in - e_out) / e_in, abs=1e-3)
        # the interval series sums to the same balance
        series = api.get(f"/v1/loss/transformer/{rep['entity_id']}/intervals",
                         params={"resolution": "hour", "limit": 1000})
        assert series.status_code == 200, series.text
        hours = series.json()["items"]
        assert len(hours) == 24
        assert sum(h["loss_wh"] for h in hours) == pytest.approx(e_in - e_out, abs=2 * TOL_WH)


def test_suspects_rank_the_known_thieves_first(pipeline: dict[str, Any], api: httpx.Client) -> None:
    # min_score=0: the whole ranking, not only those over the default suspicion threshold
    res = api.get("/v1/suspects", params={"limit": TOP, "min_score": 0})
    assert res.status_code == 200, res.text
    items = res.json()["items"]
    assert [s["rank"] for s in items] == list(range(1, TOP + 1))
    top = [s["meter_id"] for s in items]
    thieves: dict[str, str] = pipeline["thieves"]
    missing = {m: k for m, k in thieves.items() if m not in top}
    assert not missing, f"known thieves not in the top {TOP}: {missing}; top: {items}"
    by_meter = {s["meter_id"]: s for s in items}
    bypass = next(m for m, k in thieves.items() if k == "bypass")
    assert by_meter[bypass]["strongest_indicator"] == "bypass"
    assert by_meter[bypass]["evidence"]["bypass"] > 0.5
    # and the thieves' transformers show positive non-technical loss
    worst = api.get("/v1/loss", params={"level": "transformer", "sort": "worst"}).json()["items"]
    assert all(r["ntl_wh"] is not None and r["ntl_wh"] > 0 for r in worst)


def test_the_archive_check_raises_no_false_alarm_through_the_pipeline(pipeline: dict[str, Any]) -> None:
    """The demo's report ends with an archive check on the readings that came through edge,
    broker and ingest; the archive is the simulator's own, thieves included, so no meter may be
    suspected of hanging elsewhere and every meter reported (nothing never_reported)."""
    with psycopg.connect(pipeline["dsn"]) as conn:
        check = conn.execute("SELECT check_id, suspicions FROM archive_checks ORDER BY check_id DESC"
                             " LIMIT 1").fetchone()
        assert check is not None, "the demo's report ran no archive check"
        assert check[1] == 0
        kinds = dict(conn.execute("SELECT kind, count(*) FROM archive_findings WHERE check_id = %s"
                                  " GROUP BY 1", [check[0]]).fetchall())
    assert "never_reported" not in kinds and "not_in_archive" not in kinds, kinds
