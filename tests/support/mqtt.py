"""A small synchronous MQTT v5 test client over paho-mqtt, for asserting broker behaviour.

It records the CONNACK, SUBACK and PUBACK reason codes and every message received, so tests
can assert on what the *broker* said rather than on what the client hoped.
"""

from __future__ import annotations

import queue
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int


@dataclass
class MqttTestClient:
    host: str
    port: int
    ca: Path
    cert: Path | None = None
    key: Path | None = None
    client_id: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:8]}")

    def __post_init__(self) -> None:
        self.messages: queue.Queue[Received] = queue.Queue()
        self.connack: ReasonCode | None = None
        self.disconnected = threading.Event()
        self._connected = threading.Event()
        self._acks: dict[int, list[ReasonCode]] = {}
        self._ack_events: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=mqtt.MQTTv5)
        c.tls_set(
            ca_certs=str(self.ca),
            certfile=str(self.cert) if self.cert else None,
            keyfile=str(self.key) if self.key else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        self.client = c

    # -- callbacks (paho's network thread) --------------------------------------------------
    def _on_connect(self, _c: Any, _u: Any, _flags: Any, rc: ReasonCode, _props: Any) -> None:
        self.connack = rc
        self._connected.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self.disconnected.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put(Received(msg.topic, bytes(msg.payload), msg.qos))

    def _record(self, mid: int, codes: list[ReasonCode]) -> None:
        with self._lock:
            self._acks[mid] = codes
            self._ack_events.setdefault(mid, threading.Event()).set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _props: Any) -> None:
        self._record(mid, [rc])

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, rcs: list[ReasonCode], _p: Any) -> None:
        self._record(mid, list(rcs))

    def _wait_ack(self, mid: int, timeout: float) -> list[ReasonCode]:
        with self._lock:
            ev = self._ack_events.setdefault(mid, threading.Event())
        if not ev.wait(timeout):
            raise TimeoutError(f"no acknowledgement for mid {mid} within {timeout} s")
        return self._acks[mid]

    # -- API -------------------------------------------------------------------------------
    def connect(self, timeout: float = 10.0) -> bool:
        """True when the broker sent a successful CONNACK; False when it refused us in any way
        (TLS alert, closed socket, failing reason code)."""
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except (ssl.SSLError, OSError):
            return False
        self.client.loop_start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._connected.wait(0.05):
                return self.connack is not None and not self.connack.is_failure
            if self.disconnected.is_set():
                return False
        return False

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 10.0) -> list[ReasonCode]:
        rc, mid = self.client.subscribe(topic, qos=qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe not sent: {rc}"
        assert mid is not None
        return self._wait_ack(mid, timeout)

    def publish(self, topic: str, payload: bytes, qos: int = 1,
                timeout: float = 10.0) -> ReasonCode | None:
        """Publish and return the broker's PUBACK reason code (None for QoS 0)."""
        info = self.client.publish(topic, payload, qos=qos)
        if qos == 0:
            return None
        return self._wait_ack(info.mid, timeout)[0]

    def receive(self, timeout: float) -> Received | None:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()
