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
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.delivery import ConnEvent, ConnState, backoff_delay, next_conn_state
from edge.outbox import Outbox
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


@dataclass
class PublisherStats:
    published: int = 0
    pubacks: int = 0
    puback_failures: int = 0
    resends: int = 0
    connects: int = 0
    connect_failures: int = 0
    acks: int = 0
    malformed_acks: int = 0
    confirmed_seq: int = 0
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
                 window: int = 64, resend_after: float = 30.0, backoff_cap: float = 30.0) -> None:
        self.agent_id = agent_id
        self.broker = broker
        self.outbox = outbox
        self.window = window
        self.resend_after = resend_after
        self.backoff_cap = backoff_cap
        self.stats = PublisherStats(confirmed_seq=outbox.confirmed_seq())
        self.state = ConnState.DISCONNECTED
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._sent_up_to = outbox.confirmed_seq()  # highest seq published on this connection
        self._inflight: dict[int, int] = {}  # paho mid -> seq, awaiting PUBACK
        self._last_progress = time.monotonic()
        self._attempt = 0
        self._thread: threading.Thread | None = None
        self._client = self._make_client()

    # -- paho plumbing -------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.agent_id,
                        protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(self.broker.ca), certfile=str(self.broker.cert),
                  keyfile=str(self.broker.key), cert_reqs=ssl.CERT_REQUIRED)
        c.max_inflight_messages_set(self.window)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    def _transition(self, event: ConnEvent) -> None:
        new = next_conn_state(self.state, event)
        if new is not self.state:
            log.info("broker connection %s -> %s (%s)", self.state.value, new.value, event.value)
        self.state = new
        self.stats.state = new.value

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self.stats.connect_failures += 1
            self.stats.last_error = f"CONNACK {rc}"
            self._transition(ConnEvent.FAILED)
            return
        self.stats.connects += 1
        self._attempt = 0
        with self._lock:
            # Start again from the last confirmed seq: whatever was in flight on the old
            # connection may never have reached the broker.
            self._sent_up_to = self.outbox.confirmed_seq()
            self._inflight.clear()
            self._last_progress = time.monotonic()
        client.subscribe(topic(self.agent_id, "ack"), qos=1)
        self._transition(ConnEvent.CONNACK_OK)
        self._wake.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        self.stats.last_error = f"disconnected: {rc}"
        self._transition(ConnEvent.FAILED)

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self._lock:
            self._inflight.pop(mid, None)
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
            seq = decode_ack(bytes(msg.payload))
        except MalformedMessage as exc:
            self.stats.malformed_acks += 1
            log.warning("ignoring a malformed ack on %s: %s", msg.topic, exc)
            return
        self.stats.acks += 1
        if self.outbox.confirm(seq):
            with self._lock:
                self._last_progress = time.monotonic()
        self.stats.confirmed_seq = self.outbox.confirmed_seq()
        self._wake.set()

    # -- the pump ------------------------------------------------------------------------------
    def _pump(self) -> None:
        """Publish pending envelopes up to the window; resend when the cloud stays silent."""
        if self.state is not ConnState.CONNECTED:
            return
        now = time.monotonic()
        with self._lock:
            confirmed = self.outbox.confirmed_seq()
            if (self.outbox.depth and self._sent_up_to > confirmed
                    and now - self._last_progress > self.resend_after):
                log.warning("no cloud ack for %.0f s: resending from seq %d",
                            now - self._last_progress, confirmed + 1)
                self.stats.resends += 1
                self._sent_up_to = confirmed
                self._last_progress = now
            room = self.window - len(self._inflight)
            after = max(self._sent_up_to, confirmed)
        if room <= 0:
            return
        for item in self.outbox.pending(after_seq=after, limit=room):
            info = self._client.publish(topic(self.agent_id, "readings"), item.data, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break  # not connected any more; on_disconnect drives the state
            with self._lock:
                self._inflight[info.mid] = item.seq
                self._sent_up_to = item.seq
            self.stats.published += 1

    def _connect_once(self) -> None:
        self._transition(ConnEvent.START if self.state is ConnState.DISCONNECTED else
                         ConnEvent.TIMER)
        try:
            self._client.connect(self.broker.host, self.broker.port, self.broker.keepalive)
        except (OSError, ssl.SSLError) as exc:
            _close_sockets_left_in(exc)
            self.stats.connect_failures += 1
            self.stats.last_error = f"connect: {exc}"
            self._transition(ConnEvent.FAILED)

    def run(self) -> None:
        """Run until `stop()`: connect, pump, loop; back off and reconnect on any failure."""
        while not self._stop.is_set():
            if self.state in (ConnState.DISCONNECTED, ConnState.BACKOFF):
                if self.state is ConnState.BACKOFF:
                    delay = backoff_delay(self._attempt, cap=self.backoff_cap)
                    self._attempt += 1
                    if self._stop.wait(delay):
                        break
                self._connect_once()
                continue
            rc = self._client.loop(timeout=0.05)
            if rc != mqtt.MQTT_ERR_SUCCESS and self.state is not ConnState.BACKOFF:
                self.stats.last_error = f"loop: {mqtt.error_string(rc)}"
                self._transition(ConnEvent.FAILED)
                continue
            self._pump()
        if self.state in (ConnState.CONNECTED, ConnState.CONNECTING):
            self._client.disconnect()
            self._client.loop(timeout=0.1)
        self._transition(ConnEvent.STOP)

    def publish_event(self, payload: bytes) -> bool:
        """Best effort: alarms go out if connected now; the log and metrics keep them too."""
        return self._side_channel("events", payload, retain=False)

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
