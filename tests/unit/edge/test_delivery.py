"""The delivery state tables and the reconnect backoff."""

from __future__ import annotations

import random

import pytest

from edge.delivery import (
    ConnEvent,
    ConnState,
    EnvelopeEvent,
    EnvelopeState,
    backoff_delay,
    next_conn_state,
    next_envelope_state,
)


def test_puback_is_not_commitment() -> None:
    s = next_envelope_state(EnvelopeState.SIGNED, EnvelopeEvent.PUBLISH)
    s = next_envelope_state(s, EnvelopeEvent.PUBACK)
    assert s is EnvelopeState.AT_BROKER
    # no cloud ack in time: publish it again
    assert next_envelope_state(s, EnvelopeEvent.RESEND_TIMEOUT) is EnvelopeState.SIGNED
    assert next_envelope_state(s, EnvelopeEvent.CLOUD_ACK) is EnvelopeState.COMMITTED


def test_committed_is_final() -> None:
    for ev in EnvelopeEvent:
        assert next_envelope_state(EnvelopeState.COMMITTED, ev) is EnvelopeState.COMMITTED


def test_lost_connection_resends_in_flight() -> None:
    assert next_envelope_state(EnvelopeState.IN_FLIGHT, EnvelopeEvent.CONNECTION_LOST) \
        is EnvelopeState.SIGNED


def test_connection_cycle() -> None:
    s = next_conn_state(ConnState.DISCONNECTED, ConnEvent.START)
    assert s is ConnState.CONNECTING
    assert next_conn_state(s, ConnEvent.FAILED) is ConnState.BACKOFF
    assert next_conn_state(ConnState.BACKOFF, ConnEvent.TIMER) is ConnState.CONNECTING
    assert next_conn_state(ConnState.CONNECTED, ConnEvent.FAILED) is ConnState.BACKOFF
    assert next_conn_state(ConnState.CONNECTED, ConnEvent.STOP) is ConnState.DISCONNECTED


def test_backoff_is_jittered_and_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(a, base=0.5, cap=30, rng=rng) for a in range(40)]
    assert all(0 <= d <= 30 for d in delays)
    assert len(set(delays)) == len(delays), "no jitter"
    assert max(delays[10:]) > 10, "the ceiling must grow to the cap"
    with pytest.raises(ValueError, match="attempt"):
        backoff_delay(-1)
