"""The ingestor process end to end: real broker, real database, real agents' publishers.
Everything published is stored exactly once, the agent's outbox empties only through the
cloud's acks, and two ingestors sharing the load store exactly what one would. An exception
in our own code costs one message, never the worker; a dead or stuck worker fails /healthz."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud.ingest.config import IngestConfig
from cloud.ingest.service import Ingestor
from cloud.ingest.writer import register_key
from edge.outbox import Outbox
from edge.publisher import BrokerConfig, Publisher
from tests.conftest import ClientCert, Services
from tests.unit.security.envelopes import Agent, cert_for, key_from_byte

pytestmark = pytest.mark.integration


def wait_until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def start_agent(services: Services, dsn: str, cert: ClientCert, tmp: Path, n: int,
                byte: int) -> tuple[Publisher, Outbox]:
    a = Agent(cert.cn, key_from_byte(byte))
    with psycopg.connect(dsn) as c, c.transaction():
        register_key(c, cert_for(a.key, a.agent_id))
    ob = Outbox(tmp / f"{cert.cn}.db")
    for i in range(n):
        data = a.envelope(meter=f"{cert.cn}-m")
        ob.append(i + 1, data, 0)
    pub = Publisher(cert.cn, BrokerConfig(services.mqtt_host, services.mqtt_port,
                                          services.ca_cert, cert.cert, cert.key), ob,
                    resend_after=2.0, backoff_cap=0.5)
    pub.start()
    return pub, ob


def healthz(ing: Ingestor) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ing.http_port}/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as c:
        return c.execute(sql).fetchall()


def test_everything_published_is_stored_once_and_acknowledged(
    services: Services, dsn: str, ingestors: Callable[[], Ingestor],
    issue_client_cert: Callable[[str], ClientCert], agent_id: str, tmp_path: Path,
) -> None:
    ing = ingestors()
    pub, ob = start_agent(services, dsn, issue_client_cert(agent_id), tmp_path, 120, 3)
    try:
        wait_until(lambda: ob.depth == 0)
        assert ob.confirmed_seq() == 120
    finally:
        pub.stop()
        ob.close()
    assert rows(dsn, "SELECT count(*), min(seq), max(seq) FROM envelopes") == [(120, 1, 120)]
    assert rows(dsn, "SELECT count(*), count(DISTINCT (meter_id, ts)) FROM readings") == [(120, 120)]
    assert rows(dsn, "SELECT committed_upto FROM agent_progress") == [(120,)]
    assert ing.stats.stored == 120
    # its meter is in no archive (no topology here): stored, and said so
    wait_until(lambda: ing.stats.unknown_meters == 1)


def test_two_ingestors_split_the_load_with_the_same_result(
    services: Services, dsn: str, ingestors: Callable[[], Ingestor],
    issue_client_cert: Callable[[str], ClientCert], agent_id: str, tmp_path: Path,
) -> None:
    first, second = ingestors(), ingestors()
    agents = [start_agent(services, dsn, issue_client_cert(f"{agent_id}-{i}"), tmp_path, 150, 10 + i)
              for i in range(3)]
    try:
        wait_until(lambda: all(ob.depth == 0 for _p, ob in agents), timeout=60)
    finally:
        for pub, ob in agents:
            pub.stop()
            ob.close()
    assert rows(dsn, "SELECT agent_id, count(*), max(seq) FROM envelopes GROUP BY 1 ORDER BY 1") \
        == [(f"{agent_id}-{i}", 150, 150) for i in range(3)]
    assert rows(dsn, "SELECT count(*) FROM readings") == [(450,)]
    assert rows(dsn, "SELECT count(*) FROM quarantine") == [(0,)]
    assert first.stats.stored > 0
    assert second.stats.stored > 0, "the shared subscription did not split the load"
    assert first.stats.stored + second.stats.stored == 450


def test_the_ingestor_logs_envelopes_and_signs_heads(
    services: Services, dsn: str, issue_client_cert: Callable[[str], ClientCert],
    agent_id: str, tmp_path: Path,
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from security.keys import save_private_key

    key_path = tmp_path / "log.key"
    save_private_key(Ed25519PrivateKey.generate(), key_path)
    cert = issue_client_cert("wattrail-ingestor")
    ing = Ingestor(IngestConfig(dsn, services.mqtt_host, services.mqtt_port, services.ca_cert,
                                cert.cert, cert.key, share_group=f"g{uuid.uuid4().hex[:8]}",
                                max_wait_s=0.05, log_key=key_path, sth_every_s=0.3))
    ing.start()
    try:
        assert ing.connected.wait(10)
        pub, ob = start_agent(services, dsn, issue_client_cert(agent_id), tmp_path, 30, 7)
        try:
            wait_until(lambda: ob.depth == 0)
            wait_until(lambda: ing.stats.tree_size == 30)
        finally:
            pub.stop()
            ob.close()
    finally:
        ing.stop()
    assert rows(dsn, "SELECT count(*), count(log_index) FROM envelopes") == [(30, 30)]
    assert rows(dsn, "SELECT max(tree_size) FROM tlog_tree_heads") == [(30,)]


def test_an_exception_in_our_code_costs_one_message_not_the_worker(
    services: Services, dsn: str, ingestors: Callable[..., Ingestor],
    issue_client_cert: Callable[[str], ClientCert], agent_id: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cloud.ingest import pipeline
    from cloud.ingest.classify import Candidate

    real_store, real_classify = pipeline.store_batch, pipeline.classify

    def store_batch(conn: Any, items: Any, **kw: Any) -> Any:  # a bug that bites on seq 3 only
        if any(isinstance(i, Candidate) and i.seq == 3 for i in items):
            raise RuntimeError("boom on seq 3")
        return real_store(conn, items, **kw)

    def classify(m: Any, *a: Any, **kw: Any) -> Any:  # and one in classify, on seq 5 only
        out = real_classify(m, *a, **kw)
        if isinstance(out, Candidate) and out.seq == 5:
            raise ZeroDivisionError("classify bug on seq 5")
        return out

    monkeypatch.setattr(pipeline, "store_batch", store_batch)
    monkeypatch.setattr(pipeline, "classify", classify)
    ing = ingestors(metrics_port=0)
    pub, ob = start_agent(services, dsn, issue_client_cert(agent_id), tmp_path, 8, 5)
    try:
        wait_until(lambda: len(rows(dsn, "SELECT 1 FROM envelopes")) == 6
                   and len(rows(dsn, "SELECT 1 FROM quarantine")) == 2)
    finally:
        pub.stop()
        ob.close()
    assert rows(dsn, "SELECT seq FROM envelopes ORDER BY 1") == [(s,) for s in (1, 2, 4, 6, 7, 8)]
    q = rows(dsn, "SELECT seq, reason, detail FROM quarantine ORDER BY seq")
    # the store's failure knows its seq; classify's knows only the topic's agent
    assert [(s, r) for s, r, _d in q] == [(3, "internal_error"), (None, "internal_error")]
    assert "RuntimeError: boom on seq 3" in q[0][2]
    assert "ZeroDivisionError: classify bug on seq 5" in q[1][2]
    assert rows(dsn, "SELECT DISTINCT agent_id FROM quarantine") == [(agent_id,)]
    assert ing.stats.internal_errors >= 2
    status, body = healthz(ing)
    assert status == 200 and body["worker_alive"], body


def test_healthz_fails_when_the_worker_thread_is_dead(
    ingestors: Callable[..., Ingestor], monkeypatch: pytest.MonkeyPatch,
) -> None:
    ing = ingestors(metrics_port=0)
    assert healthz(ing)[0] == 200
    died: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", died.append)  # we expect this one

    class Killed(BaseException):  # not an Exception: nothing in the worker catches it
        pass

    def die() -> list[Any]:
        raise Killed

    ing._next_batch = die  # type: ignore[method-assign]  # on purpose: kill the worker
    wait_until(lambda: ing._worker is not None and not ing._worker.is_alive())
    assert [d.exc_type for d in died] == [Killed]
    status, body = healthz(ing)
    assert (status, body["status"], body["worker_alive"]) == (503, "unhealthy", False), body
    assert "worker not running" in body["problems"][0]


def test_healthz_fails_while_the_worker_is_stuck(ingestors: Callable[..., Ingestor]) -> None:
    ing = ingestors(metrics_port=0, stale_after_s=0.5)
    release = threading.Event()
    real_next = ing._next_batch

    def hang() -> list[Any]:
        release.wait(30)  # a statement that does not return, say
        return real_next()

    ing._next_batch = hang  # type: ignore[method-assign]  # on purpose: hang the worker
    wait_until(lambda: healthz(ing)[0] == 503, timeout=10)
    status, body = healthz(ing)
    assert status == 503 and body["worker_alive"] and "worker stuck" in body["problems"][0], body
    ing._next_batch = real_next  # type: ignore[method-assign]
    release.set()
    wait_until(lambda: healthz(ing)[0] == 200, timeout=10)
