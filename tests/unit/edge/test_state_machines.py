"""The transition tables drive the code: an unlisted pair raises, every listed pair is used by
the code (or is named below with the reason it is kept), and the publisher built on them
behaves as before (driven here through a fake paho client; the broker tests cover the rest)."""

from __future__ import annotations

import enum
import hashlib
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

import edge.delivery as delivery
import edge.publisher as publisher_mod
from edge.delivery import (
    BREAKER_TRANSITIONS,
    CONN_TRANSITIONS,
    ENVELOPE_TRANSITIONS,
    BreakerEvent,
    BreakerState,
    ConnEvent,
    ConnState,
    Deliveries,
    EnvelopeEvent,
    EnvelopeState,
    Machine,
    next_breaker_state,
    next_conn_state,
    next_envelope_state,
)
from edge.outbox import Outbox
from edge.publisher import BrokerConfig, Publisher
from edge.scheduler import Breaker, Decision
from protocols.errors import LocalProtocolError
from protocols.topics import encode_ack

Env, EvE = EnvelopeState, EnvelopeEvent
Table = Mapping[tuple[Any, Any], Any]
TABLES: list[tuple[Table, Any, Any]] = [
    (ENVELOPE_TRANSITIONS, Env.SIGNED, next_envelope_state),
    (CONN_TRANSITIONS, ConnState.DISCONNECTED, next_conn_state),
    (BREAKER_TRANSITIONS, BreakerState.CLOSED, next_breaker_state),
]

# Listed pairs the current code never produces, and why they stay in the table.
NOT_PRODUCED = {
    # COMMITTED is final (test_delivery.test_committed_is_final); a committed envelope has no
    # machine, so only the PUBACKs of its late copies reach the table
    (Env.COMMITTED, EvE.PUBLISH), (Env.COMMITTED, EvE.CLOUD_ACK),
    (Env.COMMITTED, EvE.CONNECTION_LOST), (Env.COMMITTED, EvE.RESEND_TIMEOUT),
    # an envelope never published on this connection has no machine: confirmed_seq covers it
    (Env.SIGNED, EvE.CLOUD_ACK),
    # a failed probe always trips (test_scheduler.test_breaker_table pins the entry)
    (BreakerState.HALF_OPEN, BreakerEvent.FAILURE),
    # "success anywhere closes" (the diagram); the poller never asks an open breaker
    (BreakerState.OPEN, BreakerEvent.SUCCESS),
}


def _unlisted() -> Iterator[tuple[Any, Any, Any]]:
    for table, initial, fn in TABLES:
        events = type(next(iter(table))[1])
        for state in type(initial):
            for event in events:
                if (state, event) not in table:
                    yield fn, state, event


@pytest.mark.parametrize(("fn", "state", "event"), list(_unlisted()))
def test_an_unlisted_pair_raises_naming_state_and_event(fn: Any, state: enum.Enum,
                                                        event: enum.Enum) -> None:
    with pytest.raises(LocalProtocolError, match=f"{event.value!r}.*{state.value!r}"):
        fn(state, event)


def test_machine_steps_through_its_table_and_names_itself() -> None:
    m = Machine(CONN_TRANSITIONS, ConnState.DISCONNECTED, what="broker connection")
    assert m.step(ConnEvent.START) is ConnState.CONNECTING
    assert m.state is ConnState.CONNECTING
    with pytest.raises(LocalProtocolError, match="broker connection: event 'timer'"):
        m.step(ConnEvent.TIMER)
    assert m.state is ConnState.CONNECTING  # a refused step changes nothing


def test_impossible_uses_raise() -> None:
    d = Deliveries(0)
    d.published(1, 1, 0)
    with pytest.raises(LocalProtocolError, match="envelope seq 1: event 'publish'"):
        d.published(2, 1, 0)  # seq 1 is in flight: the pump never publishes below its cursor
    b = Breaker(threshold=1)
    b.record(False, 0.0)
    with pytest.raises(LocalProtocolError, match="breaker"):
        b.record(False, 0.0)  # an open breaker is skipped, so it has no outcome to record


@pytest.mark.parametrize(("table", "initial"), [(t, i) for t, i, _ in TABLES])
def test_every_state_is_reachable(table: Table, initial: enum.Enum) -> None:
    seen, todo = {initial}, [initial]
    while todo:
        s = todo.pop()
        for (src, _), dst in table.items():
            if src is s and dst not in seen:
                seen.add(dst)
                todo.append(dst)
    assert seen == set(type(initial))


class _Recording(dict[Any, Any]):
    def __init__(self, table: Table) -> None:
        super().__init__(table)
        self.used: set[Any] = set()

    def __getitem__(self, key: Any) -> Any:
        self.used.add(key)
        return super().__getitem__(key)


# -- a fake paho client: the publisher's IO shell without a broker ------------------------------
class _Info:
    def __init__(self, rc: int, mid: int) -> None:
        self.rc, self.mid = rc, mid

    def is_published(self) -> bool:
        return True


class _FakeClient:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.mid = 0

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> _Info:
        self.mid += 1
        self.sent.append((topic, payload))
        return _Info(mqtt.MQTT_ERR_SUCCESS, self.mid)

    def readings(self) -> list[bytes]:
        out = [p for t, p in self.sent if t.endswith("/readings")]
        self.sent.clear()
        return out

    def subscribe(self, *_a: Any, **_k: Any) -> None:
        pass

    def connect(self, *_a: Any, **_k: Any) -> int:
        return mqtt.MQTT_ERR_SUCCESS

    def disconnect(self) -> None:
        pass

    def loop(self, timeout: float = 1.0) -> int:
        return mqtt.MQTT_ERR_SUCCESS


class _Publisher(Publisher):
    def _make_client(self) -> Any:
        return _FakeClient()

    @property
    def fake(self) -> _FakeClient:
        assert isinstance(self._client, _FakeClient)
        return self._client


OK = ReasonCode(PacketTypes.PUBACK, "Success")
REFUSED = ReasonCode(PacketTypes.PUBACK, identifier=0x87)
CONNACK_OK = ReasonCode(PacketTypes.CONNACK, "Success")
CONNACK_REFUSED = ReasonCode(PacketTypes.CONNACK, identifier=0x87)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    ob = Outbox(tmp_path / "o.db")
    for seq in range(1, 7):
        ob.append(seq, b"env-%d" % seq, created_ms=1000 * seq)
    yield ob
    ob.close()


@pytest.fixture
def make(outbox: Outbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(publisher_mod, "probe_tls", lambda *_a, **_k: None)
    broker = BrokerConfig("localhost", 1, tmp_path / "ca", tmp_path / "cert", tmp_path / "key")

    def make(window: int = 3) -> _Publisher:
        return _Publisher("agent-1", broker, outbox, window=window, resend_after=1e9)
    return make


def _connect(p: _Publisher) -> None:
    p._connect_once()
    p._on_connect(p._client, None, None, CONNACK_OK, None)


def _ack(p: _Publisher, seq: int) -> None:
    msg = mqtt.MQTTMessage(topic=b"wattrail/v1/agent-1/ack")
    msg.payload = encode_ack(seq, hashlib.sha256(b"env-%d" % seq).digest())
    p._on_message(p._client, None, msg)


def _resend_due(p: _Publisher) -> None:
    p._last_progress = float("-inf")  # as if resend_after passed without ack progress


def test_publisher_window_pubacks_resend_and_reconnect(make: Any) -> None:
    p = make(window=3)
    _connect(p)
    p._pump()
    assert p.fake.readings() == [b"env-1", b"env-2", b"env-3"]  # mids 2..4 (1 is the birth)
    p._on_publish(p._client, None, 2, OK, None)
    assert (p.stats.pubacks, p.stats.last_puback_seq) == (1, 1)
    p._pump()
    assert p.fake.readings() == [b"env-4"]  # one window slot came free
    p._on_publish(p._client, None, 3, REFUSED, None)
    assert p.stats.puback_failures == 1 and p.stats.reason_codes == {"Not authorized": 1}
    p._pump()
    assert p.fake.readings() == [b"env-5"]  # a refused copy frees its slot, is not resent yet
    _ack(p, 1)
    assert p.outbox.depth == 5 and p.stats.confirmed_seq == 1
    # the cloud is silent: resend from seq 2, but env-3..5's copies (mids 4..6) are still out
    _resend_due(p)
    p._pump()
    assert p.stats.resends == 1 and p.fake.readings() == []
    p._on_publish(p._client, None, 4, OK, None)  # env-3's first copy, after the resend
    assert p.stats.last_puback_seq == 3
    p._pump()
    assert p.fake.readings() == [b"env-2"]  # from the lowest unconfirmed again
    # a lost connection: everything unconfirmed goes out again on the new one
    p._on_disconnect(p._client, None, None, "lost", None)
    assert p.state is ConnState.BACKOFF
    _connect(p)
    p._on_publish(p._client, None, 6, OK, None)  # a copy of the old connection: unknown mid
    assert p.stats.last_puback_seq == 3 and p.stats.pubacks == 3
    p._pump()
    assert p.fake.readings() == [b"env-2", b"env-3", b"env-4"]
    _ack(p, 6)
    p._pump()
    assert p.outbox.depth == 0 and p.fake.readings() == []


def test_every_listed_pair_is_used_by_the_code(make: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    env = _Recording(ENVELOPE_TRANSITIONS)
    conn = _Recording(CONN_TRANSITIONS)
    brk = _Recording(BREAKER_TRANSITIONS)
    monkeypatch.setattr(delivery, "ENVELOPE_TRANSITIONS", env)
    monkeypatch.setattr(delivery, "BREAKER_TRANSITIONS", brk)
    monkeypatch.setattr(publisher_mod, "CONN_TRANSITIONS", conn)

    # envelopes, through the bookkeeping the publisher runs (mid, seq)
    d = Deliveries(0)
    d.published(1, 1, 0)
    d.puback(1, refused=False)
    d.cloud_ack(1)  # the usual life
    d.published(2, 2, 0)
    d.cloud_ack(2)
    d.puback(2, refused=False)  # the cloud was faster than the PUBACK
    d.published(3, 3, 0)
    d.cloud_ack(3)
    d.puback(3, refused=True)
    d.published(4, 4, 0)
    d.puback(4, refused=True)
    assert d.state(4) is Env.REFUSED
    d.resend_timeout()
    d.published(5, 4, 0)
    d.resend_timeout()
    d.puback(5, refused=False)  # a late PUBACK does not promote an envelope due for resend
    assert d.state(4) is Env.SIGNED
    d.published(6, 4, 0)
    d.resend_timeout()
    d.puback(6, refused=True)
    d.published(7, 4, 0)
    d.resend_timeout()
    d.published(8, 4, 0)
    d.puback(7, refused=False)
    d.puback(8, refused=False)
    assert d.state(4) is Env.AT_BROKER
    d.resend_timeout()
    d.published(9, 4, 0)
    d.resend_timeout()
    d.published(10, 4, 0)
    d.puback(9, refused=False)
    d.puback(10, refused=True)
    d.published(11, 5, 0)
    d.resend_timeout()
    d.published(12, 5, 0)
    d.puback(11, refused=True)
    d.puback(12, refused=False)
    d.published(13, 6, 0)
    d.resend_timeout()
    d.published(14, 6, 0)
    d.puback(13, refused=True)
    d.puback(14, refused=True)
    assert d.state(5) is Env.SIGNED  # each resend takes every published envelope
    d.published(15, 7, 0)
    d.puback(15, refused=False)
    d.published(16, 8, 0)
    assert (d.state(6), d.state(7), d.state(8)) == (Env.REFUSED, Env.AT_BROKER, Env.IN_FLIGHT)
    d.connection_lost()
    assert d.envelopes == {} and d.copies == {} and d.cursor == 3
    d.published(17, 4, 0)
    d.puback(17, refused=True)
    d.cloud_ack(4)
    assert d.state(4) is Env.COMMITTED and d.cursor == 4

    # the broker connection, through the publisher
    p = make()
    p._stop.set()
    p.run()  # stopped before the first attempt
    for leave in ("connecting", "connected", "backoff"):
        p = make()
        p._connect_once()
        if leave != "connecting":
            p._on_connect(p._client, None, None, CONNACK_OK, None)
        if leave == "backoff":
            p._on_disconnect(p._client, None, None, "lost", None)
            p._connect_once()  # the timer
            p._on_connect(p._client, None, None, CONNACK_REFUSED, None)
            p._failed_before_connack("the same attempt, diagnosed")
        assert p.state.value == leave
        p._stop.set()
        p.run()
        assert p.state is ConnState.DISCONNECTED

    # the breakers, as the poller drives them
    b = Breaker(threshold=2, rng=random.Random(1))
    b.record(True, 0.0)
    b.record(False, 0.0)
    b.record(False, 0.0)
    assert b.decide(b.retry_at) is Decision.PROBE
    b.record(False, b.retry_at)
    assert b.decide(b.retry_at) is Decision.PROBE
    assert b.record(True, b.retry_at) is BreakerState.CLOSED

    for rec in (env, conn, brk):
        kept = NOT_PRODUCED & set(rec)
        assert rec.used == set(rec) - kept, "a pair is neither used nor explained"
