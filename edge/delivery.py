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


# --------------------------------------------------------------------------------------------
# Per-meter circuit breaker (used by edge/scheduler.py)
#
# A meter that stops answering costs its link one full timeout per request. On a half-duplex
# RS-485 bus or a shared gateway connection that time is taken from every other meter on the
# link, so after `threshold` consecutive comms failures the breaker OPENs: the meter is not
# asked at all (its reading for the cycle is COMMS_LOST, flagged as skipped) until its retry
# time, which grows with every failed probe (jittered, capped). When the retry time comes the
# breaker is HALF_OPEN: the meter gets one probe, polled *after* the healthy meters of its
# link so that the probe's timeout cannot push their reads late. A probe that succeeds CLOSEs
# the breaker; one that fails OPENs it again with a longer wait.
#
#   CLOSED ──failure (threshold reached)──▶ OPEN ──retry time──▶ HALF_OPEN ──success──▶ CLOSED
#     ▲ │                                     ▲                      │
#     │ └─success (resets the count)          └──────failure─────────┘
#     └───────────────────────────────────── success anywhere ───────────────────────────────


class BreakerState(enum.Enum):
    CLOSED = "closed"  # polled every cycle
    OPEN = "open"  # skipped until its retry time
    HALF_OPEN = "half-open"  # one probe this cycle


class BreakerEvent(enum.Enum):
    SUCCESS = "success"  # an answer (valid or not decodable: the meter is there)
    FAILURE = "failure"  # comms lost, below the threshold
    TRIP = "trip"  # comms lost, threshold reached
    RETRY_DUE = "retry-due"


BREAKER_TRANSITIONS: dict[tuple[BreakerState, BreakerEvent], BreakerState] = {
    (BreakerState.CLOSED, BreakerEvent.TRIP): BreakerState.OPEN,
    (BreakerState.OPEN, BreakerEvent.RETRY_DUE): BreakerState.HALF_OPEN,
    (BreakerState.HALF_OPEN, BreakerEvent.SUCCESS): BreakerState.CLOSED,
    (BreakerState.HALF_OPEN, BreakerEvent.FAILURE): BreakerState.OPEN,
    (BreakerState.HALF_OPEN, BreakerEvent.TRIP): BreakerState.OPEN,
    (BreakerState.OPEN, BreakerEvent.SUCCESS): BreakerState.CLOSED,
}


def next_breaker_state(state: BreakerState, event: BreakerEvent) -> BreakerState:
    return BREAKER_TRANSITIONS.get((state, event), state)


def breaker_retry_delay(opens: int, *, base: float, cap: float,
                        rng: random.Random | None = None) -> float:
    """Seconds an OPEN breaker waits before its next probe: base * 2**(opens-1) with ±20 %
    jitter (so the dead meters of one bus do not all come due in the same cycle), capped.
    The jitter band is narrower than the doubling, so waits grow until they reach the cap."""
    if opens < 1:
        raise ValueError(f"opens must be >= 1, got {opens}")
    ceiling = base * (2 ** min(opens - 1, 32))
    return float(min(cap, ceiling * (rng or random).uniform(0.8, 1.2)))
