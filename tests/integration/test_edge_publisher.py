"""The publisher against the real TLS broker: in-order delivery, deletion only on the cloud's
ack, resend without ack, recovery after a network cut, and garbage acks ignored."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.outbox import Outbox
from edge.publisher import BrokerConfig, Publisher
from protocols.topics import encode_ack as _encode_ack
from tests.conftest import ClientCert, Services
from tests.support.mqtt import MqttTestClient
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.integration


def wait_until(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def cloud(services: Services,
          issue_client_cert: Callable[[str], ClientCert]) -> Iterator[MqttTestClient]:
    cert = issue_client_cert("wattrail-ingestor")
    c = MqttTestClient(services.mqtt_host, services.mqtt_port, services.ca_cert,
                       cert=cert.cert, key=cert.key)
    assert c.connect()
    yield c
    c.close()


def make_publisher(services: Services, cert: ClientCert, outbox: Outbox, port: int | None = None,
                   **kw: float) -> Publisher:
    broker = BrokerConfig(services.mqtt_host, port or services.mqtt_port, services.ca_cert,
                          cert.cert, cert.key, keepalive=5)
    return Publisher(cert.cn, broker, outbox, backoff_cap=0.5, **kw)  # type: ignore[arg-type]


def encode_ack(seq: int, data: bytes | None = None) -> bytes:
    """The cloud's ack for `fill`'s envelope `seq` (or for the envelope bytes `data`)."""
    return _encode_ack(seq, hashlib.sha256(data or b"env-%d" % seq).digest())


def drain(cloud: MqttTestClient, n: int, timeout: float = 15.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        msg = cloud.receive(0.1)
        if msg is not None:
            got.append(msg.payload)
    return got


def fill(outbox: Outbox, start: int, stop: int) -> None:
    for seq in range(start, stop):
        outbox.append(seq, b"env-%d" % seq, created_ms=seq)


def test_delivers_in_order_and_deletes_only_on_cloud_ack(
    services: Services, issue_client_cert: Callable[[str], ClientCert], cloud: MqttTestClient,
    agent_id: str, tmp_path: Path,
) -> None:
    cloud.subscribe(f"$share/{uuid.uuid4().hex[:6]}/wattrail/v1/{agent_id}/readings")
    outbox = Outbox(tmp_path / "o.db")
    fill(outbox, 1, 201)
    pub = make_publisher(services, issue_client_cert(agent_id), outbox, resend_after=60)
    pub.start()
    try:
        got = drain(cloud, 200)
        assert got == [b"env-%d" % s for s in range(1, 201)]
        wait_until(lambda: pub.stats.pubacks >= 200)
        assert outbox.depth == 200, "PUBACK is not commitment: nothing may be deleted yet"
        cloud.publish(f"wattrail/v1/{agent_id}/ack", encode_ack(150), qos=1)
        wait_until(lambda: outbox.depth == 50)
        assert outbox.confirmed_seq() == 150
    finally:
        pub.stop()
        outbox.close()


def test_resends_when_the_cloud_stays_silent_and_ignores_junk_acks(
    services: Services, issue_client_cert: Callable[[str], ClientCert], cloud: MqttTestClient,
    agent_id: str, tmp_path: Path,
) -> None:
    cloud.subscribe(f"$share/{uuid.uuid4().hex[:6]}/wattrail/v1/{agent_id}/readings")
    outbox = Outbox(tmp_path / "o.db")
    fill(outbox, 1, 6)
    pub = make_publisher(services, issue_client_cert(agent_id), outbox, resend_after=0.5)
    pub.start()
    try:
        first = drain(cloud, 5)
        cloud.publish(f"wattrail/v1/{agent_id}/ack", b"\xff\x00junk", qos=1)
        again = drain(cloud, 5, timeout=10)
        assert first == again == [b"env-%d" % s for s in range(1, 6)]
        wait_until(lambda: pub.stats.malformed_acks == 1)
        assert pub.stats.resends >= 1
        assert outbox.depth == 5, "a junk ack confirmed something"
    finally:
        pub.stop()
        outbox.close()


def test_recovers_after_a_network_cut_and_learns_the_retained_ack(
    services: Services, issue_client_cert: Callable[[str], ClientCert], cloud: MqttTestClient,
    agent_id: str, tmp_path: Path,
) -> None:
    cloud.subscribe(f"$share/{uuid.uuid4().hex[:6]}/wattrail/v1/{agent_id}/readings")
    proxy = TcpProxy(services.mqtt_host, services.mqtt_port)
    outbox = Outbox(tmp_path / "o.db")
    fill(outbox, 1, 11)
    pub = make_publisher(services, issue_client_cert(agent_id), outbox, port=proxy.port,
                         resend_after=60)
    pub.start()
    try:
        assert len(drain(cloud, 10)) == 10
        proxy.cut()
        wait_until(lambda: pub.state.value in ("backoff", "connecting"))
        fill(outbox, 11, 21)  # produced during the outage
        # the cloud commits 1..10 while the agent is away; the ack is retained
        cloud.client.publish(f"wattrail/v1/{agent_id}/ack", encode_ack(10), qos=1, retain=True)
        time.sleep(0.5)
        assert outbox.depth == 20
        proxy.restore()
        wait_until(lambda: outbox.confirmed_seq() == 10)
        got: list[bytes] = []
        deadline = time.monotonic() + 15
        while b"env-20" not in got and time.monotonic() < deadline:
            msg = cloud.receive(0.1)
            if msg is not None:
                got.append(msg.payload)
        # After reconnecting it sends everything unconfirmed in seq order. It may resend 1..10
        # if it reconnected before the retained ack reached it: duplicates are allowed (the
        # store is idempotent), losses and reordering are not.
        first_seen = list(dict.fromkeys(p for p in got if int(p.split(b"-")[1]) > 10))
        assert first_seen == [b"env-%d" % s for s in range(11, 21)]
        assert pub.stats.connects >= 2
    finally:
        pub.stop()
        proxy.close()
        outbox.close()
        cloud.client.publish(f"wattrail/v1/{agent_id}/ack", b"", qos=1, retain=True)


def test_a_retained_ack_of_an_earlier_chain_deletes_nothing(
    services: Services, issue_client_cert: Callable[[str], ClientCert], cloud: MqttTestClient,
    agent_id: str, tmp_path: Path,
) -> None:
    """An agent id whose outbox started afresh (a reset device, a second demo run against the
    same broker) finds the retained "committed up to 48" of its earlier chain: it must not
    take it as a confirmation of the seq 1 it has just signed."""
    cloud.subscribe(f"$share/{uuid.uuid4().hex[:6]}/wattrail/v1/{agent_id}/readings")
    old = f"wattrail/v1/{agent_id}/ack"
    cloud.client.publish(old, encode_ack(48, b"earlier chain, seq 48"), qos=1, retain=True)
    cloud.client.publish(old, encode_ack(2, b"earlier chain, seq 2"), qos=1, retain=True)
    outbox = Outbox(tmp_path / "o.db")
    fill(outbox, 1, 4)
    pub = make_publisher(services, issue_client_cert(agent_id), outbox, resend_after=60)
    pub.start()
    try:
        assert drain(cloud, 3) == [b"env-1", b"env-2", b"env-3"]
        wait_until(lambda: pub.stats.foreign_acks == 1)
        assert (outbox.depth, outbox.confirmed_seq()) == (3, 0), "an earlier chain's ack " \
            "confirmed envelopes the cloud has never seen"
        cloud.publish(old, encode_ack(2), qos=1)  # the cloud commits our own 1..2
        wait_until(lambda: outbox.confirmed_seq() == 2)
        assert [p.seq for p in outbox.pending()] == [3]
    finally:
        pub.stop()
        outbox.close()
        cloud.client.publish(old, b"", qos=1, retain=True)
