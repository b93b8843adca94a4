"""The streaming alarm rules in the ingest transaction, against the real database: a tamper
flag raises one alarm with the envelope that signed it as evidence, a redelivered envelope
raises nothing again, the data clears it, the lifecycle steps are recorded, every event
reaches the outbox of each matching route, and a broken rule costs no reading."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud.alarms import store as alarms
from cloud.ingest.classify import Candidate, Incoming, Quarantine, classify
from cloud.ingest.writer import load_keyring, register_key, store_batch
from cloud.store.migrate import migrate
from cloud.store.topology import import_topology
from firmware_sim.grid import generate_grid
from firmware_sim.grid_file import write_grid
from protocols.envelope import GENESIS_PREV_HASH, ClockStatus, Payload, encode_payload, envelope_hash
from protocols.reading import MeterStatus, Reading
from security.keys import key_id, sign_envelope
from tests.unit.security.envelopes import T0, cert_for, key_from_byte

pytestmark = pytest.mark.integration
HOUR = 3_600_000


class Signer:
    def __init__(self, agent_id: str) -> None:
        self.agent_id, self.key, self.seq, self.prev = agent_id, key_from_byte(3), 0, GENESIS_PREV_HASH

    def envelope(self, readings: list[Reading]) -> bytes:
        self.seq += 1
        p = Payload(self.agent_id, key_id(self.key), self.seq, self.prev, T0 + 10 * HOUR,
                    ClockStatus.SYNCED, readings)
        data = sign_envelope(self.key, key_id(self.key), encode_payload(p))
        self.prev = envelope_hash(data)
        return data


@pytest.fixture
def conn(db_dsn: str, tmp_path: Path) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_dsn) as c:
        migrate(c)
        grid = tmp_path / "grid.json"
        write_grid(generate_grid(seed=5, meters=12, feeders=1, transformers=1, regions=1), grid)
        import_topology(c, grid)
        c.commit()
        yield c


def _items(conn: psycopg.Connection[Any], agent: str, *payloads: bytes) -> list[Candidate | Quarantine]:
    ring = load_keyring(conn)
    return [classify(Incoming(f"wattrail/v1/{agent}/readings", p, i, T0 + 10 * HOUR), ring)
            for i, p in enumerate(payloads)]


def test_tamper_alarm_lifecycle_through_the_writer(conn: psycopg.Connection[Any]) -> None:
    meter = conn.execute("SELECT min(meter_id) FROM meters WHERE kind = 'customer'").fetchone()[0]  # type: ignore[index]
    a = Signer("gw-alarm")
    with conn.transaction():
        register_key(conn, cert_for(a.key, a.agent_id))
        conn.execute("INSERT INTO alarm_routes (route_id, kind, target, min_severity)"
                     " VALUES ('ops', 'webhook', 'http://127.0.0.1:9/hook', 'major'),"
                     " ('quiet', 'webhook', 'http://127.0.0.1:9/other', 'critical'),"
                     " ('other-region', 'smtp', 'x@example.org', 'warning')")
        conn.execute("UPDATE alarm_routes SET region_id = 'NOWHERE' WHERE route_id = 'other-region'")

    def r(h: float, status: int) -> Reading:
        return Reading(meter, T0 + int(h * HOUR), import_wh=1000.0 + h, status=status)

    e1 = a.envelope([r(0, 0)])
    e2 = a.envelope([r(1, int(MeterStatus.COVER_OPEN))])
    res = store_batch(conn, _items(conn, a.agent_id, e1, e2))
    assert res.stored == 2 and res.alarm_events == 1
    again = store_batch(conn, _items(conn, a.agent_id, e2))  # redelivered: nothing new
    assert again.duplicates == 1 and again.alarm_events == 0
    rows = conn.execute("SELECT alarm_id, rule_id, object_id, severity, state, repeats"
                        " FROM alarms").fetchall()
    assert [x[1:] for x in rows] == [("tamper", meter, "critical", "active", 0)]
    aid = rows[0][0]
    ev = conn.execute("SELECT action, evidence FROM alarm_events WHERE alarm_id = %s", [aid]).fetchall()
    assert ev == [("raise", [["gw-alarm", 2, meter, T0 + HOUR]])]  # the signed envelope behind it

    # the data clears it after the rule's quiet hour; both events reach the matching routes
    e3 = a.envelope([r(1.5, 0), r(2.5, 0)])
    assert store_batch(conn, _items(conn, a.agent_id, e3)).alarm_events == 1
    assert conn.execute("SELECT state, cleared_by FROM alarms WHERE alarm_id = %s", [aid]).fetchone() == (
        "cleared", "data")
    out = conn.execute("SELECT route_id, payload->>'action', status FROM alarm_notifications"
                       " ORDER BY notification_id").fetchall()
    assert out == [("ops", "raise", "pending"), ("quiet", "raise", "pending"),
                   ("ops", "clear", "pending"), ("quiet", "clear", "pending")]

    # a new episode is a new alarm; acknowledge, then clear by hand
    e4 = a.envelope([r(3, int(MeterStatus.MAGNETIC_FIELD))])
    store_batch(conn, _items(conn, a.agent_id, e4))
    new = conn.execute("SELECT alarm_id FROM alarms WHERE state = 'active'").fetchone()[0]  # type: ignore[index]
    assert new != aid
    conn.commit()
    step = alarms.acknowledge(conn, new, "ops alice", "crew sent")
    assert step.state == "acknowledged"
    with pytest.raises(alarms.LifecycleError, match="only an active alarm"):
        alarms.acknowledge(conn, new, "ops bob")
    alarms.clear(conn, new, "ops alice", "seal replaced")
    with pytest.raises(alarms.LifecycleError, match="cleared already"):
        alarms.clear(conn, new, "ops alice")
    with pytest.raises(alarms.LifecycleError, match="no alarm"):
        alarms.acknowledge(conn, 10**9, "x")
    hist = conn.execute("SELECT action, actor, detail FROM alarm_events WHERE alarm_id = %s"
                        " ORDER BY event_no", [new]).fetchall()
    assert hist == [("raise", "data", "meter flags magnetic_field"),
                    ("acknowledge", "ops alice", "crew sent"), ("manual_clear", "ops alice", "seal replaced")]


def test_a_broken_rule_costs_no_reading(conn: psycopg.Connection[Any]) -> None:
    meter = conn.execute("SELECT min(meter_id) FROM meters WHERE kind = 'customer'").fetchone()[0]  # type: ignore[index]
    a = Signer("gw-broken")
    with conn.transaction():
        register_key(conn, cert_for(a.key, a.agent_id))
        conn.execute("INSERT INTO alarm_rules (rule_id, kind, severity, definition, updated_by)"
                     " VALUES ('bad', 'voltage_band', 'major', %s, 'test')",
                     [json.dumps({"id": "bad", "kind": "voltage_band", "low_v": 300})])
    e1 = a.envelope([Reading(meter, T0, import_wh=1.0, v_l1=100.0, status=1)])
    res = store_batch(conn, _items(conn, a.agent_id, e1))
    assert res.stored == 1 and res.readings == 1 and res.alarm_events == -1
    assert conn.execute("SELECT count(*) FROM readings").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM alarms").fetchone() == (0,)


def test_the_alarms_commands(conn: psycopg.Connection[Any], db_dsn: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from wattrail.cli import app

    meter = conn.execute("SELECT min(meter_id) FROM meters WHERE kind = 'customer'").fetchone()[0]  # type: ignore[index]
    a = Signer("gw-cli")
    with conn.transaction():
        register_key(conn, cert_for(a.key, a.agent_id))
    run = CliRunner().invoke
    env = {"WATTRAIL_DSN": db_dsn, "COLUMNS": "250"}
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nid = "low-v"\nkind = "voltage_band"\nseverity = "minor"\n'
                     'duration_s = 0\nlow_v = 220.0\n')
    r = run(app, ["alarms", "rules", "import", str(rules), "--actor", "eng"], env=env)
    assert r.exit_code == 0 and "low-v" in r.output, r.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nid = "x"\nkind = "voltage_band"\nlow_v = 300.0\n')
    r = run(app, ["alarms", "rules", "import", str(bad), "--actor", "eng"], env=env)
    assert r.exit_code == 1 and "low_v (300.0) must be below" in r.output
    r = run(app, ["alarms", "rules", "list"], env=env)
    assert r.exit_code == 0 and "low-v" in r.output and "tamper" not in r.output  # imported: no defaults
    store_batch(conn, _items(conn, a.agent_id, a.envelope([Reading(meter, T0, v_l1=210.0)])))
    conn.commit()
    r = run(app, ["alarms", "list", "--state", "active"], env=env)
    assert r.exit_code == 0 and "low-v" in r.output and meter in r.output, r.output
    aid = conn.execute("SELECT alarm_id FROM alarms").fetchone()[0]  # type: ignore[index]
    r = run(app, ["alarms", "ack", str(aid), "--actor", "ops", "--comment", "looking"], env=env)
    assert r.exit_code == 0 and "acknowledged" in r.output
    r = run(app, ["alarms", "ack", str(aid), "--actor", "ops"], env=env)
    assert r.exit_code == 1 and "only an active alarm" in r.output
    r = run(app, ["alarms", "show", str(aid)], env=env)
    assert r.exit_code == 0 and "gw-cli" in r.output and "looking" in r.output
    r = run(app, ["alarms", "clear", str(aid), "--actor", "ops"], env=env)
    assert r.exit_code == 0 and "cleared" in r.output
    r = run(app, ["alarms", "list", "--state", "bogus"], env=env)
    assert r.exit_code == 2
