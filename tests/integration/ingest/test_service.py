"""The ingestor process end to end: real broker, real database, real agents' publishers.
Everything published is stored exactly once, the agent's outbox empties only through the
cloud's acks, and two ingestors sharing the load store exactly what one would."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud.ingest.service import IngestConfig, Ingestor
from cloud.ingest.writer import register_key
from cloud.store.migrate import migrate
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


@pytest.fixture
def dsn(db_dsn: str) -> str:
    with psycopg.connect(db_dsn) as c:
        migrate(c)
    return db_dsn


@pytest.fixture
def ingestors(services: Services, dsn: str, issue_client_cert: Callable[[str], ClientCert]
              ) -> Iterator[Callable[[], Ingestor]]:
    cert = issue_client_cert("wattrail-ingestor")
    group = f"g{uuid.uuid4().hex[:8]}"  # tests share the broker; keep their groups apart
    made: list[Ingestor] = []

    def make() -> Ingestor:
        ing = Ingestor(IngestConfig(dsn, services.mqtt_host, services.mqtt_port, services.ca_cert,
                                    cert.cert, cert.key, share_group=group, max_wait_s=0.05))
        ing.start()
        assert ing.connected.wait(10)
        made.append(ing)
        return ing

    yield make
    for ing in made:
        ing.stop()


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
