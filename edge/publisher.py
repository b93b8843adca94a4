"""Publish the outbox over MQTT v5 with mutual TLS until the cloud confirms each envelope.

The IO shell around the tables in `edge/delivery.py`. One thread owns the paho client and
calls `loop()` itself, so reconnects follow our jittered, capped backoff instead of paho's
fixed schedule, and every state change goes through the transition tables.

- Envelopes go out in seq order, QoS 1, at most `window` without PUBACK.
- The cloud's retained ack on `wattrail/v1/<agent>/ack` ("committed up to N") deletes up to N
  from the outbox. It is retained, so a reconnecting agent learns it at once.
- Without ack progress for `resend_after` seconds while envelopes are pending, everything
  unconfirmed is published again: a PUBACK only means the broker had it in memory.
- Malformed acks are counted and ignored; they never confirm anything.
- MQTT v5 `clean_start=False` with a session expiry: the broker keeps our subscription to the
  ack topic (and queues acks sent while we were away) across reconnects.
- Birth and last will on `wattrail/v1/<agent>/status`, both retained: "online" after every
  CONNACK, "offline" published by the broker if the connection dies without a DISCONNECT (and
  by us on a clean stop), so a dashboard always sees the agent's last known state.
- Alarm and tamper events go to `events` from a bounded in-memory queue, flushed whenever we
  are connected. They are notifications only: the flags they report are also in the signed
  readings, which is what the evidence rests on.
- A failed attempt before CONNACK is diagnosed (`edge/broker_errors.py`): a revoked or
  foreign certificate is logged as such, not as a bare "connection lost".
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.broker_errors import explain_tls_error, probe_tls
from edge.delivery import CONN_TRANSITIONS, ConnEvent, ConnState, Deliveries, Machine, backoff_delay
from edge.outbox import ForeignAckError, Outbox
from protocols.topics import MalformedMessage, decode_ack, topic

log = logging.getLogger("wattrail.edge.publisher")


@dataclass(frozen=True)
class BrokerConfig:
    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    keepalive: int = 30
    session_expiry: int = 3600  # seconds the broker keeps our session after a disconnect


@dataclass
class PublisherStats:
    published: int = 0
    pubacks: int = 0
    puback_failures: int = 0
    resends: int = 0
    connects: int = 0
    connect_attempts: int = 0
    connect_failures: int = 0
    acks: int = 0
    malformed_acks: int = 0
    foreign_acks: int = 0  # well-formed acks about another chain (edge/outbox.py): ignored
    confirmed_seq: int = 0
    last_puback_seq: int = 0
    publish_lag_s: float = 0.0  # sealed -> PUBACK of the last envelope the broker took
    events_sent: int = 0
    events_dropped: int = 0  # the bounded queue overflowed while we were offline
    state: str = ConnState.DISCONNECTED.value
    last_error: str = ""
    reason_codes: dict[str, int] = field(default_factory=dict)


def _close_sockets_left_in(exc: BaseException) -> None:
    """paho-mqtt drops, without closing, the TLS socket whose handshake failed; over a long
    outage those leak one descriptor per attempt. Close whatever sockets its frames held."""
    tb = exc.__traceback__
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if isinstance(value, socket.socket):
                with contextlib.suppress(OSError):
                    value.close()
        tb = tb.tb_next


class Publisher:
    def __init__(self, agent_id: str, broker: BrokerConfig, outbox: Outbox, *,
                 window: int = 64, resend_after: float = 30.0, backoff_cap: float = 30.0,
                 max_events: int = 1000, connect_timeout: float = 10.0) -> None:
        self.agent_id = agent_id
        self.broker = broker
        self.outbox = outbox
        self.window = window
        self.resend_after = resend_after
        self.backoff_cap = backoff_cap
        self.stats = PublisherStats(confirmed_seq=outbox.confirmed_seq())
        self._conn: Machine[ConnState, ConnEvent] = Machine(
            CONN_TRANSITIONS, ConnState.DISCONNECTED, what="broker connection")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._deliveries = Deliveries(outbox.confirmed_seq())  # envelopes and copies out
        self._events: deque[bytes] = deque()
        self.max_events = max_events
        self.connect_timeout = connect_timeout
        self._connecting_since = 0.0
        self._last_progress = time.monotonic()
        self._attempt = 0
        self._next_delay: float | None = None
        self._thread: threading.Thread | None = None
        self._client = self._make_client()

    # -- paho plumbing -------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.agent_id,
                        protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(self.broker.ca), certfile=str(self.broker.cert),
                  keyfile=str(self.broker.key), cert_reqs=ssl.CERT_REQUIRED)
        c.max_inflight_messages_set(self.window)
        # The broker publishes this (retained) if we vanish without a DISCONNECT.
        c.will_set(topic(self.agent_id, "status"), self._status_payload("offline", "connection lost"),
                   qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    def _status_payload(self, state: str, reason: str = "") -> bytes:
        doc: dict[str, Any] = {"agent_id": self.agent_id, "state": state,
                               "at_ms": time.time_ns() // 1_000_000}
        if reason:
            doc["reason"] = reason
        if state == "online":
            doc.update(head_seq=self.outbox.head().seq, confirmed_seq=self.outbox.confirmed_seq())
        return json.dumps(doc, separators=(",", ":")).encode()

    @property
    def state(self) -> ConnState:
        return self._conn.state

    def _transition(self, event: ConnEvent) -> None:
        old = self._conn.state
        new = self._conn.step(event)
        if new is not old:
            log.info("broker connection %s -> %s (%s)", old.value, new.value, event.value)
        self.stats.state = new.value

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self.stats.connect_failures += 1
            self.stats.last_error = f"the broker refused us: CONNACK {rc}"
            log.error("broker %s:%d: %s", self.broker.host, self.broker.port,
                      self.stats.last_error)
            self._transition(ConnEvent.FAILED)
            return
        self.stats.connects += 1
        self._attempt = 0
        with self._lock:
            # Start again from the last confirmed seq: whatever was in flight on the old
            # connection may never have reached the broker.
            self._deliveries.connection_lost()
            self._last_progress = time.monotonic()
        client.subscribe(topic(self.agent_id, "ack"), qos=1)
        client.publish(topic(self.agent_id, "status"), self._status_payload("online"), qos=1,
                       retain=True)  # birth: replaces the last will the broker may have sent
        log.info("connected to %s:%d as %s", self.broker.host, self.broker.port, self.agent_id)
        self._transition(ConnEvent.CONNACK_OK)
        self._wake.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if self._stop.is_set():
            self._transition(ConnEvent.FAILED)
        elif self.state is ConnState.CONNECTING:
            self._failed_before_connack(f"disconnected before CONNACK: {rc}")
        elif self.state is ConnState.CONNECTED:
            self.stats.last_error = f"disconnected: {rc}"
            log.warning("lost the broker connection: %s", self.stats.last_error)
            self._transition(ConnEvent.FAILED)

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self._lock:
            sent = self._deliveries.puback(mid, refused=rc.is_failure)
        if sent is not None and not rc.is_failure:
            self.stats.last_puback_seq = max(self.stats.last_puback_seq, sent[0])
            self.stats.publish_lag_s = max(0.0, time.time() - sent[1] / 1000)
        if rc.is_failure:
            # e.g. 0x87 not authorized: our certificate does not match our agent id. It will
            # be resent after `resend_after`; the reason is kept for the health report.
            self.stats.puback_failures += 1
            self.stats.reason_codes[str(rc)] = self.stats.reason_codes.get(str(rc), 0) + 1
        else:
            self.stats.pubacks += 1
        self._wake.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            ack = decode_ack(bytes(msg.payload))
        except MalformedMessage as exc:
            self.stats.malformed_acks += 1
            log.warning("ignoring a malformed ack on %s: %s", msg.topic, exc)
            return
        self.stats.acks += 1
        try:
            confirmed = self.outbox.confirm(ack.committed_seq, ack.envelope_hash)
        except ForeignAckError as exc:
            # e.g. the retained ack of an earlier chain under our id: it must not delete what
            # we signed since; the cloud's next ack for our own chain replaces it
            self.stats.foreign_acks += 1
            log.warning("%s (an ack left from an earlier chain under this agent id?)", exc)
            return
        with self._lock:
            self._deliveries.cloud_ack(self.outbox.confirmed_seq())
            if confirmed:
                self._last_progress = time.monotonic()
        self.stats.confirmed_seq = self.outbox.confirmed_seq()
        self._wake.set()

    # -- the pump ------------------------------------------------------------------------------
    def _pump(self) -> None:
        """Publish pending envelopes up to the window; resend when the cloud stays silent."""
        if self.state is not ConnState.CONNECTED:
            return
        self._flush_events()
        now = time.monotonic()
        with self._lock:
            confirmed = self.outbox.confirmed_seq()
            self._deliveries.cloud_ack(confirmed)
            if (self.outbox.depth and self._deliveries.unconfirmed
                    and now - self._last_progress > self.resend_after):
                log.warning("no cloud ack for %.0f s: resending from seq %d",
                            now - self._last_progress, confirmed + 1)
                self.stats.resends += 1
                self._deliveries.resend_timeout()
                self._last_progress = now
            room = self.window - len(self._deliveries.copies)
            after = self._deliveries.cursor
        if room <= 0:
            return
        for item in self.outbox.pending(after_seq=after, limit=room):
            info = self._client.publish(topic(self.agent_id, "readings"), item.data, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break  # not connected any more; on_disconnect drives the state
            with self._lock:
                self._deliveries.published(info.mid, item.seq, item.created_ms)
            self.stats.published += 1

    def _flush_events(self) -> None:
        while True:
            with self._lock:
                if not self._events:
                    return
                item = self._events[0]
            info = self._client.publish(topic(self.agent_id, "events"), item, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # lost the connection: keep it for the next one
            with self._lock:  # publish_event may have dropped it meanwhile (queue full)
                if self._events and self._events[0] is item:
                    self._events.popleft()
            self.stats.events_sent += 1

    def _connect_once(self) -> None:
        self._transition(ConnEvent.START if self.state is ConnState.DISCONNECTED else
                         ConnEvent.TIMER)
        self.stats.connect_attempts += 1
        self._connecting_since = time.monotonic()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.broker.session_expiry
        try:
            rc = self._client.connect(self.broker.host, self.broker.port, self.broker.keepalive,
                                      clean_start=False, properties=props)
        except (OSError, ssl.SSLError) as exc:
            _close_sockets_left_in(exc)
            self._failed_before_connack(
                explain_tls_error(exc, ca=self.broker.ca, cert=self.broker.cert), probe=False)
            return
        if rc != mqtt.MQTT_ERR_SUCCESS:  # e.g. the broker's TLS alert hit our CONNECT
            self._failed_before_connack(f"connect: {mqtt.error_string(rc)}")

    def _failed_before_connack(self, error: str, *, probe: bool = True) -> None:
        """An attempt that never got a CONNACK. paho cannot tell us why a TLS client
        certificate was refused, so on the first failure of a streak, and then on every
        power-of-two attempt (bounded extra connections), ask the broker directly."""
        n = self._attempt
        if probe and (n & (n - 1)) == 0:
            verdict = probe_tls(self.broker.host, self.broker.port, ca=self.broker.ca,
                                cert=self.broker.cert, key=self.broker.key, timeout=2.0)
            if verdict is not None:
                error = verdict
        self.stats.connect_failures += 1
        self.stats.last_error = error
        delay = backoff_delay(n, cap=self.backoff_cap)
        self._next_delay = delay
        log.error("cannot connect to broker %s:%d (attempt %d): %s; retrying in %.1f s",
                  self.broker.host, self.broker.port, n + 1, error, delay)
        self._transition(ConnEvent.FAILED)  # BACKOFF already if paho reported it first

    def run(self) -> None:
        """Run until `stop()`: connect, pump, loop; back off and reconnect on any failure."""
        while not self._stop.is_set():
            if self.state in (ConnState.DISCONNECTED, ConnState.BACKOFF):
                if self.state is ConnState.BACKOFF:
                    delay = self._next_delay
                    if delay is None:
                        delay = backoff_delay(self._attempt, cap=self.backoff_cap)
                    self._next_delay = None
                    self._attempt += 1
                    if self._stop.wait(delay):
                        break
                self._connect_once()
                continue
            rc = self._client.loop(timeout=0.05)
            # loop() runs our callbacks: on a lost connection paho calls on_disconnect before it
            # returns, which may have moved us to BACKOFF already. Read the state again (mypy
            # keeps the narrowing of the check above across the call; a declared local does not).
            state: ConnState = self.state
            if rc != mqtt.MQTT_ERR_SUCCESS and state is not ConnState.BACKOFF:
                if self.state is ConnState.CONNECTING:
                    self._failed_before_connack(f"loop: {mqtt.error_string(rc)}")
                else:
                    self.stats.last_error = f"loop: {mqtt.error_string(rc)}"
                    log.warning("lost the broker connection: %s", self.stats.last_error)
                    self._transition(ConnEvent.FAILED)
                continue
            if (self.state is ConnState.CONNECTING
                    and time.monotonic() - self._connecting_since > self.connect_timeout):
                self._client.disconnect()
                self._failed_before_connack(f"no CONNACK within {self.connect_timeout:.0f} s")
                continue
            self._pump()
        if self.state in (ConnState.CONNECTED, ConnState.CONNECTING):
            if self.state is ConnState.CONNECTED:
                # a clean DISCONNECT suppresses the will, so say "offline" ourselves
                info = self._client.publish(topic(self.agent_id, "status"),
                                            self._status_payload("offline", "stopped"),
                                            qos=1, retain=True)
                deadline = time.monotonic() + 1.0
                while not info.is_published() and time.monotonic() < deadline:
                    self._client.loop(timeout=0.05)
            self._client.disconnect()
            self._client.loop(timeout=0.1)
        self._transition(ConnEvent.STOP)

    def publish_event(self, payload: bytes) -> bool:
        """Queue an alarm for `events`; sent now if connected, else after the next connect.
        False when the queue was full and the oldest event was dropped for this one (the log
        and the metrics still have it, and the signed readings carry the flags)."""
        dropped = False
        with self._lock:
            if len(self._events) >= self.max_events:
                self._events.popleft()
                self.stats.events_dropped += 1
                dropped = True
            self._events.append(payload)
        self._wake.set()
        return not dropped

    def publish_status(self, payload: bytes) -> bool:
        """Retained health summary, so a dashboard sees the last state of a silent agent."""
        return self._side_channel("status", payload, retain=True)

    def _side_channel(self, kind: str, payload: bytes, *, retain: bool) -> bool:
        if self.state is not ConnState.CONNECTED:
            return False
        info = self._client.publish(topic(self.agent_id, kind), payload, qos=1, retain=retain)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def notify(self) -> None:
        """A new envelope is in the outbox."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"publisher-{self.agent_id}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
