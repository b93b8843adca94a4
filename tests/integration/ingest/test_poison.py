"""A poisoned but validly signed envelope, through a real `wattrail ingest` process, the TLS
broker and TimescaleDB: it is quarantined with its reason, every valid envelope after it (of
the same agent and of another) is stored and acknowledged, and the ingestor stays healthy.

The poison is a reading at ts_ms = 2^62 (PostgreSQL's timestamptz overflowed in the writer)
and one at 2^63 (the int8 COPY column overflowed in Python). Either used to kill the worker
thread while the process and its metrics port stayed up, so nothing more was stored for any
agent (issue [2/8], item 1).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud.ingest.writer import register_key
from protocols.envelope import GENESIS_PREV_HASH, ClockStatus, Payload, encode_payload, envelope_hash
from protocols.reading import Reading
from protocols.topics import decode_ack, topic
from security.keys import key_id, sign_envelope
from tests.conftest import ClientCert, Services
from tests.support.mqtt import MqttTestClient
from tests.support.net import free_port
from tests.unit.security.envelopes import T0, Agent, cert_for, key_from_byte

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]


def next_envelope(a: Agent, ts: int | None = None) -> tuple[int, bytes]:
    """The agent's next envelope; one reading, at `ts` if given (else a plausible instant)."""
    seq = a.seq + 1
    sent = T0 + seq * 1000
    p = Payload(a.agent_id, key_id(a.key), seq, GENESIS_PREV_HASH if seq == 1 else a.prev, sent,
                ClockStatus.SYNCED, [Reading(f"{a.agent_id}-m", sent - 500 if ts is None else ts,
                                             import_wh=1000.0 + seq)])
    data = sign_envelope(a.key, key_id(a.key), encode_payload(p))
    a.seq, a.prev = seq, envelope_hash(data)
    return seq, data


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_for(cond: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {timeout} s; ingestor log:\n{log.read_text()[-4000:]}")


@pytest.fixture
def ingest_process(services: Services, dsn: str, tmp_path: Path,
                   issue_client_cert: Callable[[str], ClientCert],
                   ) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    cert = issue_client_cert("wattrail-ingestor")
    port, log = free_port(), tmp_path / "ingest.log"
    env = dict(os.environ, WATTRAIL_DSN=dsn, WATTRAIL_MQTT_HOST=services.mqtt_host,
               WATTRAIL_MQTT_PORT=str(services.mqtt_port), WATTRAIL_MQTT_CA=str(services.ca_cert),
               WATTRAIL_INGESTOR_CERT=str(cert.cert), WATTRAIL_INGESTOR_KEY=str(cert.key))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "wattrail.cli", "ingest", "--share-group",
             f"g{uuid.uuid4().hex[:8]}", "--max-wait", "0.05", "--metrics-port", str(port)],
            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    health = f"http://127.0.0.1:{port}/healthz"

    def subscribed() -> bool:
        try:
            return get(health)[1].get("details", {}).get("subscribed") is True
        except OSError:  # not listening yet
            return False

    try:
        wait_for(subscribed, 30, "the ingestor's subscription", log)
        yield proc, health, log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_poisoned_envelope_is_quarantined_and_the_ingestor_goes_on(
    services: Services, dsn: str, ingest_process: tuple[subprocess.Popen[bytes], str, Path],
    issue_client_cert: Callable[[str], ClientCert], agent_id: str,
) -> None:
    proc, health, log = ingest_process
    a, b = Agent(f"{agent_id}-a", key_from_byte(21)), Agent(f"{agent_id}-b", key_from_byte(22))
    with psycopg.connect(dsn) as c, c.transaction():
        for x in (a, b):
            register_key(c, cert_for(x.key, x.agent_id))
    a1, a2, a3, a4 = next_envelope(a), next_envelope(a, 2**62), next_envelope(a), next_envelope(a)
    b1, b2, b3, b4 = next_envelope(b), next_envelope(b), next_envelope(b), next_envelope(b, 2**63)
    clients = {}
    for x in (a, b):
        cert = issue_client_cert(x.agent_id)
        cl = MqttTestClient(services.mqtt_host, services.mqtt_port, services.ca_cert, cert.cert,
                            cert.key)
        assert cl.connect()
        clients[x.agent_id] = cl
    try:
        def publish(*msgs: tuple[Agent, tuple[int, bytes]]) -> None:
            for x, (_seq, data) in msgs:
                rc = clients[x.agent_id].publish(topic(x.agent_id, "readings"), data)
                assert rc is not None and not rc.is_failure

        def counts(envelopes: int, quarantined: int) -> Callable[[], bool]:
            def check() -> bool:
                with psycopg.connect(dsn) as c:
                    row = c.execute("SELECT (SELECT count(*) FROM envelopes), "
                                    "(SELECT count(*) FROM quarantine)").fetchone()
                return row == (envelopes, quarantined)
            return check

        # The poison first, alone in its batch as a re-sent envelope arrives (a batch of one
        # was re-raised instead of isolated), then valid envelopes of the same agent and of
        # another, then the 2^63 one (an OverflowError, never a database error), then more.
        def settle(envelopes: int, quarantined: int, what: str) -> None:
            wait_for(counts(envelopes, quarantined), 30, what, log)
            status, body = get(health)
            assert status == 200 and body["worker_alive"], (what, body)  # healthy throughout

        publish((a, a2))
        settle(0, 1, "the 2^62 envelope quarantined")
        publish((a, a1), (a, a3), (b, b1), (b, b2), (b, b3))
        settle(5, 1, "5 valid envelopes stored")
        publish((b, b4))
        settle(5, 2, "the 2^63 envelope quarantined")
        publish((a, a4))
        settle(6, 2, "6 envelopes stored and 2 quarantined")
        with psycopg.connect(dsn) as c:
            stored = c.execute("SELECT agent_id, seq FROM envelopes ORDER BY 1, 2").fetchall()
            readings = c.execute("SELECT count(*) FROM readings").fetchone()
            quarantined = c.execute("SELECT agent_id, seq, reason, detail, raw FROM quarantine "
                                    "ORDER BY 1").fetchall()
            progress = dict(c.execute("SELECT agent_id, committed_upto FROM agent_progress"
                                      ).fetchall())
        assert stored == [(a.agent_id, 1), (a.agent_id, 3), (a.agent_id, 4),
                          (b.agent_id, 1), (b.agent_id, 2), (b.agent_id, 3)]
        assert readings == (6,)
        (qa, qb) = quarantined
        assert qa[:3] == (a.agent_id, 2, "implausible_time")
        assert "reading 0" in qa[3] and str(2**62) in qa[3]
        assert qb[:3] == (b.agent_id, 4, "implausible_time") and str(2**63) in qb[3]
        assert (bytes(qa[4]), bytes(qb[4])) == (a2[1], b4[1]), "the signed evidence is kept"
        # acknowledged: the committed prefix stops before the quarantined seq (a gap the
        # agent's chain status shows), and another agent is not affected at all
        assert progress == {a.agent_id: 1, b.agent_id: 3}
        for x, upto, last in ((a, 1, a1), (b, 3, b3)):
            cl = clients[x.agent_id]
            cl.subscribe(topic(x.agent_id, "ack"))
            msg = cl.receive(10)
            # the ack names the envelope it ends at, so the agent can tell it is about its chain
            assert msg is not None and decode_ack(msg.payload) == (
                upto, hashlib.sha256(last[1]).digest()), msg
        status, body = get(health)
        assert (status, body["status"], body["worker_alive"]) == (200, "ok", True), body
        assert body["details"]["quarantined"] == {"implausible_time": 2}
        assert proc.poll() is None
        # and it still stores what comes next
        _seq, b5 = next_envelope(b)
        clients[b.agent_id].publish(topic(b.agent_id, "readings"), b5)

        def b5_stored() -> bool:
            with psycopg.connect(dsn) as c:
                return c.execute("SELECT 1 FROM envelopes WHERE agent_id = %s AND seq = 5",
                                 [b.agent_id]).fetchone() is not None

        wait_for(b5_stored, 30, "an envelope after the poison", log)
    finally:
        for cl in clients.values():
            cl.close()
