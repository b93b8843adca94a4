"""Ingest under faults, against a private set of services (these tests kill things):
ingestors SIGKILLed at random and exactly between commit and ack, and the database crashed
mid-stream. The database must end with exactly what the agents signed: nothing lost, nothing
twice, no gap, and the agents' outboxes drained."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud.ingest.writer import register_key
from cloud.store.migrate import migrate
from edge.outbox import Outbox
from edge.publisher import BrokerConfig, Publisher
from tests.unit.security.envelopes import Agent, cert_for, key_from_byte

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]
SERVICES = REPO / "scripts" / "services"


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state_dir = tmp_path_factory.mktemp("svc-faults")
    out = subprocess.run([sys.executable, str(SERVICES), "--state-dir", str(state_dir), "up",
                          "--json"], capture_output=True, text=True, check=True)
    state = json.loads(out.stdout)
    state["state_dir"] = str(state_dir)
    try:
        yield state
    finally:
        subprocess.run([sys.executable, str(SERVICES), "--state-dir", str(state_dir), "down",
                        "--purge"], capture_output=True, check=False)


def issue(state: dict[str, Any], cn: str) -> tuple[str, str]:
    out = subprocess.run([sys.executable, str(SERVICES), "--state-dir", state["state_dir"],
                          "issue-client", cn], capture_output=True, text=True, check=True)
    d = json.loads(out.stdout)
    return d["cert"], d["key"]


@pytest.fixture
def dsn(private: dict[str, Any]) -> str:
    name = f"f_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(private["dsn_admin"], autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    d = private["dsn_admin"].rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(d) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        c.commit()
        migrate(c)
    return d


def ingestor(private: dict[str, Any], dsn: str, group: str, *,
             crash_after_commit: int | None = None) -> subprocess.Popen[bytes]:
    """`wattrail ingest`, or with `crash_after_commit=n` the campaign's ingestor that exits
    between its n-th commit and the acks (wattrail/chaos/crashing_ingest.py)."""
    cert, key = issue(private, "wattrail-ingestor")
    e = dict(os.environ, WATTRAIL_DSN=dsn, WATTRAIL_MQTT_HOST=private["mqtt_host"],
             WATTRAIL_MQTT_PORT=str(private["mqtt_port"]), WATTRAIL_MQTT_CA=private["ca_cert"],
             WATTRAIL_INGESTOR_CERT=cert, WATTRAIL_INGESTOR_KEY=key)
    cmd = (["wattrail.cli", "ingest"] if crash_after_commit is None
           else ["wattrail.chaos.crashing_ingest", "after-commit", str(crash_after_commit), "--"])
    return subprocess.Popen([sys.executable, "-m", *cmd, "--share-group", group,
                             "--max-batch", "8", "--max-wait", "0.05"], env=e, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def agents(private: dict[str, Any], dsn: str, tmp: Path, n_agents: int, n_env: int
           ) -> list[tuple[Publisher, Outbox]]:
    out = []
    for i in range(n_agents):
        name = f"fa-{uuid.uuid4().hex[:6]}"
        a = Agent(name, key_from_byte(40 + i))
        with psycopg.connect(dsn) as c, c.transaction():
            register_key(c, cert_for(a.key, name))
        ob = Outbox(tmp / f"{name}.db")
        for seq in range(1, n_env + 1):
            ob.append(seq, a.envelope(meter=f"{name}-m"), 0)
        cert, key = issue(private, name)
        pub = Publisher(name, BrokerConfig(private["mqtt_host"], int(private["mqtt_port"]),
                                           Path(private["ca_cert"]), Path(cert), Path(key)),
                        ob, resend_after=1.5, backoff_cap=0.5)
        pub.start()
        out.append((pub, ob))
    return out


def drained(fleet: list[tuple[Publisher, Outbox]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(ob.depth == 0 for _p, ob in fleet):
            return True
        time.sleep(0.1)
    return False


def check_exact(dsn: str, fleet: list[tuple[Publisher, Outbox]], n_env: int) -> None:
    with psycopg.connect(dsn) as c:
        per_agent = dict(c.execute("SELECT agent_id, count(*) FROM envelopes GROUP BY 1"
                                   ).fetchall())
        gaps = c.execute("SELECT agent_id, max(seq) - count(*) FROM envelopes GROUP BY 1"
                         ).fetchall()
        readings = c.execute("SELECT count(*), count(DISTINCT (meter_id, ts)) FROM readings"
                             ).fetchone()
        quarantined = c.execute("SELECT count(*) FROM quarantine").fetchone()
    assert per_agent == {p.agent_id: n_env for p, _ob in fleet}, "lost or extra envelopes"
    assert all(g == 0 for _a, g in gaps), f"gaps: {gaps}"
    assert readings == (n_env * len(fleet), n_env * len(fleet)), "lost or duplicated readings"
    assert quarantined == (0,)


def stop_all(fleet: list[tuple[Publisher, Outbox]]) -> None:
    for pub, ob in fleet:
        pub.stop()
        ob.close()


def test_ingestors_killed_at_random_and_between_commit_and_ack(
    private: dict[str, Any], dsn: str, tmp_path: Path,
) -> None:
    group, n_env = f"k{uuid.uuid4().hex[:6]}", 150
    fleet = agents(private, dsn, tmp_path, 3, n_env)
    rng = random.Random(7)
    kills = 0
    try:
        for round_ in range(8):
            # every other round dies exactly after its 2nd commit, before acknowledging it
            p = ingestor(private, dsn, group, crash_after_commit=2 if round_ % 2 else None)
            time.sleep(rng.uniform(0.8, 1.6))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()
            kills += 1
        survivor = ingestor(private, dsn, group)
        try:
            assert drained(fleet, 60), "outboxes did not drain after the kills"
        finally:
            survivor.terminate()
            survivor.wait(10)
    finally:
        stop_all(fleet)
    assert kills == 8
    check_exact(dsn, fleet, n_env)


def test_database_crash_mid_stream_loses_nothing(
    private: dict[str, Any], dsn: str, tmp_path: Path,
) -> None:
    group, n_env = f"d{uuid.uuid4().hex[:6]}", 200
    p = ingestor(private, dsn, group)
    fleet = agents(private, dsn, tmp_path, 2, n_env)
    try:
        time.sleep(1.0)
        res = subprocess.run([sys.executable, str(SERVICES), "--state-dir", private["state_dir"],
                              "restart-db", "--immediate", "--down-for", "3"],
                             capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stderr
        assert drained(fleet, 60), "outboxes did not drain after the database came back"
        assert p.poll() is None, "the ingestor died with the database instead of waiting"
    finally:
        p.terminate()
        p.wait(10)
        stop_all(fleet)
    check_exact(dsn, fleet, n_env)
