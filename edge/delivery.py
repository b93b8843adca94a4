"""The delivery states of a signed envelope and of the broker connection, as tables.

Theory of operation
-------------------
A broker's PUBACK is not durability: Mosquitto acknowledges QoS 1 from memory and writes its
store on a timer, so a broker crash after PUBACK loses the message. The edge therefore keeps
every signed envelope in its fsync'd outbox until the *cloud* says the rows are committed, by
publishing "committed up to seq N" on `wattrail/v1/<agent>/ack`. Only then is it deleted.

Envelope life (one row of the outbox):

    SIGNED ──publish──▶ IN_FLIGHT ──PUBACK──▶ AT_BROKER ──cloud ack ≥ seq──▶ COMMITTED (deleted)
      ▲                    │                     │
      └──── connection lost / resend timeout ────┘

- SIGNED: in the outbox, not yet handed to the broker in this connection.
- IN_FLIGHT: published, no PUBACK yet. A lost connection sends it back to SIGNED.
- AT_BROKER: PUBACK received. Still not safe: a resend timeout without a cloud ack (the
  broker or an ingestor may have died) sends it back to SIGNED and it is published again.
  Duplicates are harmless: the store is idempotent on (agent, seq).
- COMMITTED: the cloud acknowledged seq ≥ this one; the row is deleted from the outbox.

A full outbox refuses new envelopes (the caller raises an alarm); nothing unconfirmed is ever
overwritten or dropped.

Connection life: DISCONNECTED ──connect──▶ CONNECTING ──CONNACK ok──▶ CONNECTED
and any failure ──▶ BACKOFF (jittered, capped exponential) ──timer──▶ CONNECTING.
"""

from __future__ import annotations

import enum
import random


class EnvelopeState(enum.Enum):
    SIGNED = "signed"
    IN_FLIGHT = "in-flight"
    AT_BROKER = "at-broker"
    COMMITTED = "committed"


class EnvelopeEvent(enum.Enum):
    PUBLISH = "publish"
    PUBACK = "puback"
    CLOUD_ACK = "cloud-ack"
    CONNECTION_LOST = "connection-lost"
    RESEND_TIMEOUT = "resend-timeout"


# (state, event) -> next state. Pairs not listed are no-ops: e.g. a late PUBACK after the
# connection dropped must not promote a message that is being resent.
ENVELOPE_TRANSITIONS: dict[tuple[EnvelopeState, EnvelopeEvent], EnvelopeState] = {
    (EnvelopeState.SIGNED, EnvelopeEvent.PUBLISH): EnvelopeState.IN_FLIGHT,
    (EnvelopeState.IN_FLIGHT, EnvelopeEvent.PUBACK): EnvelopeState.AT_BROKER,
    (EnvelopeState.IN_FLIGHT, EnvelopeEvent.CONNECTION_LOST): EnvelopeState.SIGNED,
    (EnvelopeState.IN_FLIGHT, EnvelopeEvent.RESEND_TIMEOUT): EnvelopeState.SIGNED,
    (EnvelopeState.AT_BROKER, EnvelopeEvent.CONNECTION_LOST): EnvelopeState.AT_BROKER,
    (EnvelopeState.AT_BROKER, EnvelopeEvent.RESEND_TIMEOUT): EnvelopeState.SIGNED,
    (EnvelopeState.SIGNED, EnvelopeEvent.CLOUD_ACK): EnvelopeState.COMMITTED,
    (EnvelopeState.IN_FLIGHT, EnvelopeEvent.CLOUD_ACK): EnvelopeState.COMMITTED,
    (EnvelopeState.AT_BROKER, EnvelopeEvent.CLOUD_ACK): EnvelopeState.COMMITTED,
}


def next_envelope_state(state: EnvelopeState, event: EnvelopeEvent) -> EnvelopeState:
    return ENVELOPE_TRANSITIONS.get((state, event), state)


class ConnState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"


class ConnEvent(enum.Enum):
    START = "start"
    CONNACK_OK = "connack-ok"
    FAILED = "failed"  # refused CONNACK, TLS error, socket error, lost connection
    TIMER = "timer"
    STOP = "stop"


CONN_TRANSITIONS: dict[tuple[ConnState, ConnEvent], ConnState] = {
    (ConnState.DISCONNECTED, ConnEvent.START): ConnState.CONNECTING,
    (ConnState.CONNECTING, ConnEvent.CONNACK_OK): ConnState.CONNECTED,
    (ConnState.CONNECTING, ConnEvent.FAILED): ConnState.BACKOFF,
    (ConnState.CONNECTED, ConnEvent.FAILED): ConnState.BACKOFF,
    (ConnState.BACKOFF, ConnEvent.TIMER): ConnState.CONNECTING,
    (ConnState.CONNECTING, ConnEvent.STOP): ConnState.DISCONNECTED,
    (ConnState.CONNECTED, ConnEvent.STOP): ConnState.DISCONNECTED,
    (ConnState.BACKOFF, ConnEvent.STOP): ConnState.DISCONNECTED,
}


def next_conn_state(state: ConnState, event: ConnEvent) -> ConnState:
    return CONN_TRANSITIONS.get((state, event), state)


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0,
                  rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)].

    Jitter matters here: after a broker restart, thousands of agents must not reconnect in
    the same instant.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    return (rng or random).uniform(0.0, ceiling)
