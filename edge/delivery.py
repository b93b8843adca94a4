"""The delivery states of a signed envelope and of the broker connection, as tables.

Theory of operation
-------------------
A broker's PUBACK is not durability: Mosquitto acknowledges QoS 1 from memory and writes its
store on a timer, so a broker crash after PUBACK loses the message. The edge therefore keeps
every signed envelope in its fsync'd outbox until the *cloud* says the rows are committed, by
publishing "committed up to seq N" on `wattrail/v1/<agent>/ack`. Only then is it deleted.

Envelope life (one row of the outbox):

    SIGNED ──publish──▶ IN_FLIGHT ──PUBACK──▶ AT_BROKER ──cloud ack ≥ seq──▶ COMMITTED (deleted)
      ▲                    │  └─refused─▶ REFUSED  │
      └──── connection lost / resend timeout ──────┘

- SIGNED: in the outbox, not yet handed to the broker in this connection.
- IN_FLIGHT: published, no PUBACK yet. A lost connection sends it back to SIGNED.
- AT_BROKER: PUBACK received. Still not safe: a lost connection, or a resend timeout without
  a cloud ack (the broker or an ingestor may have died), sends it back to SIGNED and it is
  published again. Duplicates are harmless: the store is idempotent on (agent, seq).
- REFUSED: the PUBACK carried a failure reason code (e.g. 0x87 not authorized). Like
  AT_BROKER it waits for the resend timeout (or a new connection) to go out again.
- COMMITTED: the cloud acknowledged seq ≥ this one; the row is deleted from the outbox.

The tables below are the code (as in h11's `_state.py`): `Machine.step` looks the pair up and
raises `LocalProtocolError` for a pair that is not listed, because that can only be a bug on
our side. Events that can really arrive late or twice (a PUBACK for a copy sent before a resend,
a second report of one failed attempt) are listed as explicit self-transitions.

A full outbox refuses new envelopes (the caller raises an alarm); nothing unconfirmed is ever
overwritten or dropped.

Connection life: DISCONNECTED ──connect──▶ CONNECTING ──CONNACK ok──▶ CONNECTED
and any failure ──▶ BACKOFF (jittered, capped exponential) ──timer──▶ CONNECTING.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from typing import Generic, TypeVar

from protocols.errors import LocalProtocolError

S = TypeVar("S", bound=enum.Enum)
E = TypeVar("E", bound=enum.Enum)


def transition(table: Mapping[tuple[S, E], S], state: S, event: E, *, what: str) -> S:
    """The next state after `event`, from `table`. A pair the table does not list raises:
    it means our own bookkeeping is wrong, and silently staying put would hide that."""
    try:
        return table[(state, event)]
    except KeyError:
        raise LocalProtocolError(f"{what}: event {event.value!r} is not allowed in state "
                                 f"{state.value!r}") from None


class Machine(Generic[S, E]):
    """One state and the table that moves it. `what` names the thing in error messages."""

    __slots__ = ("state", "table", "what")

    def __init__(self, table: Mapping[tuple[S, E], S], state: S, *, what: str) -> None:
        self.table = table
        self.state = state
        self.what = what

    def step(self, event: E) -> S:
        self.state = transition(self.table, self.state, event, what=self.what)
        return self.state


class EnvelopeState(enum.Enum):
    SIGNED = "signed"
    IN_FLIGHT = "in-flight"
    AT_BROKER = "at-broker"
    REFUSED = "refused"
    COMMITTED = "committed"


class EnvelopeEvent(enum.Enum):
    PUBLISH = "publish"
    PUBACK = "puback"
    PUBACK_REFUSED = "puback-refused"  # a PUBACK with a failure reason code
    CLOUD_ACK = "cloud-ack"
    CONNECTION_LOST = "connection-lost"
    RESEND_TIMEOUT = "resend-timeout"


_Env, _EvE = EnvelopeState, EnvelopeEvent

# (state, event) -> next state; every pair not listed raises. An envelope can have several
# copies out (one per publish: a resend does not wait for the old copy's PUBACK), so PUBACKs
# of older copies are listed wherever they can land.
ENVELOPE_TRANSITIONS: dict[tuple[EnvelopeState, EnvelopeEvent], EnvelopeState] = {
    (_Env.SIGNED, _EvE.PUBLISH): _Env.IN_FLIGHT,
    # a copy sent before a resend timeout: it must not promote an envelope waiting to be resent
    (_Env.SIGNED, _EvE.PUBACK): _Env.SIGNED,
    (_Env.SIGNED, _EvE.PUBACK_REFUSED): _Env.SIGNED,
    (_Env.SIGNED, _EvE.CLOUD_ACK): _Env.COMMITTED,
    (_Env.IN_FLIGHT, _EvE.PUBACK): _Env.AT_BROKER,
    (_Env.IN_FLIGHT, _EvE.PUBACK_REFUSED): _Env.REFUSED,
    (_Env.IN_FLIGHT, _EvE.CONNECTION_LOST): _Env.SIGNED,
    (_Env.IN_FLIGHT, _EvE.RESEND_TIMEOUT): _Env.SIGNED,
    (_Env.IN_FLIGHT, _EvE.CLOUD_ACK): _Env.COMMITTED,
    (_Env.AT_BROKER, _EvE.PUBACK): _Env.AT_BROKER,  # a second copy: the broker has it already
    (_Env.AT_BROKER, _EvE.PUBACK_REFUSED): _Env.AT_BROKER,  # another copy is at the broker
    # the publisher resends everything unconfirmed on each new connection
    (_Env.AT_BROKER, _EvE.CONNECTION_LOST): _Env.SIGNED,
    (_Env.AT_BROKER, _EvE.RESEND_TIMEOUT): _Env.SIGNED,
    (_Env.AT_BROKER, _EvE.CLOUD_ACK): _Env.COMMITTED,
    (_Env.REFUSED, _EvE.PUBACK): _Env.AT_BROKER,  # another copy was taken after all
    (_Env.REFUSED, _EvE.PUBACK_REFUSED): _Env.REFUSED,
    (_Env.REFUSED, _EvE.CONNECTION_LOST): _Env.SIGNED,
    (_Env.REFUSED, _EvE.RESEND_TIMEOUT): _Env.SIGNED,
    (_Env.REFUSED, _EvE.CLOUD_ACK): _Env.COMMITTED,
    # COMMITTED is final: the row is deleted, so whatever still names it (the PUBACK of a copy
    # the cloud acknowledged first, a repeated retained ack) changes nothing.
    **{(_Env.COMMITTED, ev): _Env.COMMITTED for ev in EnvelopeEvent},
}


def next_envelope_state(state: EnvelopeState, event: EnvelopeEvent) -> EnvelopeState:
    return transition(ENVELOPE_TRANSITIONS, state, event, what="envelope")


class Deliveries:
    """Where the publisher's envelopes are, as envelope machines (sans-IO; the caller locks).

    Only envelopes published since the last reset have a machine: one with none is SIGNED
    if its seq is above `confirmed_seq` and COMMITTED otherwise, and a machine that gets
    back to either state is dropped. Because resends and reconnects send *every* published
    envelope back to SIGNED, the published ones are always the lowest unconfirmed seqs, so
    the next seq to publish is the one after the highest machine (`cursor`).

    `copies` maps paho's message id of each copy without a PUBACK to (seq, created_ms); the
    publish window counts copies, not envelopes, since a resent envelope's old copy still
    occupies the broker's in-flight slot until its PUBACK.
    """

    def __init__(self, confirmed_seq: int) -> None:
        self.confirmed_seq = confirmed_seq
        self.envelopes: dict[int, Machine[EnvelopeState, EnvelopeEvent]] = {}
        self.copies: dict[int, tuple[int, int]] = {}

    def state(self, seq: int) -> EnvelopeState:
        m = self.envelopes.get(seq)
        if m is not None:
            return m.state
        return EnvelopeState.COMMITTED if seq <= self.confirmed_seq else EnvelopeState.SIGNED

    def _step(self, seq: int, event: EnvelopeEvent) -> EnvelopeState:
        m = self.envelopes.get(seq) or Machine(ENVELOPE_TRANSITIONS, self.state(seq),
                                               what=f"envelope seq {seq}")
        new = m.step(event)
        if new in (EnvelopeState.SIGNED, EnvelopeState.COMMITTED):
            self.envelopes.pop(seq, None)
        else:
            self.envelopes[seq] = m
        return new

    @property
    def cursor(self) -> int:
        """Publish envelopes with seq above this."""
        return max(max(self.envelopes, default=0), self.confirmed_seq)

    @property
    def unconfirmed(self) -> bool:
        """Something was published and the cloud has not confirmed it yet."""
        return bool(self.envelopes)

    def published(self, mid: int, seq: int, created_ms: int) -> None:
        self._step(seq, EnvelopeEvent.PUBLISH)
        self.copies[mid] = (seq, created_ms)

    def puback(self, mid: int, *, refused: bool) -> tuple[int, int] | None:
        """The (seq, created_ms) of copy `mid`, or None for a copy of an earlier connection."""
        copy = self.copies.pop(mid, None)
        if copy is not None:
            self._step(copy[0], EnvelopeEvent.PUBACK_REFUSED if refused else EnvelopeEvent.PUBACK)
        return copy

    def cloud_ack(self, confirmed_seq: int) -> None:
        """The outbox now holds nothing at or below `confirmed_seq`."""
        self.confirmed_seq = max(self.confirmed_seq, confirmed_seq)
        for seq in [s for s in self.envelopes if s <= self.confirmed_seq]:
            self._step(seq, EnvelopeEvent.CLOUD_ACK)

    def resend_timeout(self) -> None:
        """Publish everything unconfirmed again; copies still out keep their window slots."""
        for seq in list(self.envelopes):
            self._step(seq, EnvelopeEvent.RESEND_TIMEOUT)

    def connection_lost(self) -> None:
        """The old connection's copies may never have reached the broker: start again."""
        for seq in list(self.envelopes):
            self._step(seq, EnvelopeEvent.CONNECTION_LOST)
        self.copies.clear()


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


# Every pair not listed raises.
CONN_TRANSITIONS: dict[tuple[ConnState, ConnEvent], ConnState] = {
    (ConnState.DISCONNECTED, ConnEvent.START): ConnState.CONNECTING,
    # stopped before the first attempt (stop() came before the thread ran)
    (ConnState.DISCONNECTED, ConnEvent.STOP): ConnState.DISCONNECTED,
    (ConnState.CONNECTING, ConnEvent.CONNACK_OK): ConnState.CONNECTED,
    (ConnState.CONNECTING, ConnEvent.FAILED): ConnState.BACKOFF,
    (ConnState.CONNECTED, ConnEvent.FAILED): ConnState.BACKOFF,
    (ConnState.BACKOFF, ConnEvent.TIMER): ConnState.CONNECTING,
    # one attempt reported twice: paho's on_disconnect (it can run inside disconnect() or
    # connect()) and our own diagnosis of the same attempt
    (ConnState.BACKOFF, ConnEvent.FAILED): ConnState.BACKOFF,
    (ConnState.CONNECTING, ConnEvent.STOP): ConnState.DISCONNECTED,
    (ConnState.CONNECTED, ConnEvent.STOP): ConnState.DISCONNECTED,
    (ConnState.BACKOFF, ConnEvent.STOP): ConnState.DISCONNECTED,
}


def next_conn_state(state: ConnState, event: ConnEvent) -> ConnState:
    return transition(CONN_TRANSITIONS, state, event, what="broker connection")


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


# Every pair not listed raises: an OPEN breaker is never asked, so it cannot fail.
BREAKER_TRANSITIONS: dict[tuple[BreakerState, BreakerEvent], BreakerState] = {
    (BreakerState.CLOSED, BreakerEvent.SUCCESS): BreakerState.CLOSED,
    (BreakerState.CLOSED, BreakerEvent.FAILURE): BreakerState.CLOSED,  # below the threshold
    (BreakerState.CLOSED, BreakerEvent.TRIP): BreakerState.OPEN,
    (BreakerState.OPEN, BreakerEvent.RETRY_DUE): BreakerState.HALF_OPEN,
    (BreakerState.HALF_OPEN, BreakerEvent.SUCCESS): BreakerState.CLOSED,
    (BreakerState.HALF_OPEN, BreakerEvent.FAILURE): BreakerState.OPEN,
    (BreakerState.HALF_OPEN, BreakerEvent.TRIP): BreakerState.OPEN,
    (BreakerState.OPEN, BreakerEvent.SUCCESS): BreakerState.CLOSED,
}


def next_breaker_state(state: BreakerState, event: BreakerEvent) -> BreakerState:
    return transition(BREAKER_TRANSITIONS, state, event, what="meter circuit breaker")


def breaker_retry_delay(opens: int, *, base: float, cap: float,
                        rng: random.Random | None = None) -> float:
    """Seconds an OPEN breaker waits before its next probe: base * 2**(opens-1) with ±20 %
    jitter (so the dead meters of one bus do not all come due in the same cycle), capped.
    The jitter band is narrower than the doubling, so waits grow until they reach the cap."""
    if opens < 1:
        raise ValueError(f"opens must be >= 1, got {opens}")
    ceiling = base * (2 ** min(opens - 1, 32))
    return float(min(cap, ceiling * (rng or random).uniform(0.8, 1.2)))
