"""The ingestor's first pass: every message is either a candidate or quarantined with the
right reason; chain questions are left to the database."""

from __future__ import annotations

import pytest

from cloud.ingest.classify import Candidate, Incoming, Quarantine, QuarantineReason, classify
from security.keyring import Keyring
from tests.unit.security.envelopes import T0, Agent, cert_for, key_from_byte


def msg(agent: str, payload: bytes) -> Incoming:
    return Incoming(f"wattrail/v1/{agent}/readings", payload, mid=1, received_ms=T0)


@pytest.fixture
def world() -> tuple[Agent, Agent, Keyring]:
    a, b = Agent("tx-a", key_from_byte(1)), Agent("tx-b", key_from_byte(2))
    return a, b, Keyring([cert_for(a.key, a.agent_id), cert_for(b.key, b.agent_id)])


def test_valid_envelopes_are_candidates(world: tuple[Agent, Agent, Keyring]) -> None:
    a, _b, ring = world
    for _ in range(3):
        out = classify(msg("tx-a", a.envelope()), ring)
        assert isinstance(out, Candidate)
    assert out.seq == 3
    assert out.payload.readings[0].meter_id == "m-1"
    # a seq far ahead is still a candidate: gaps are judged against the database
    assert isinstance(classify(msg("tx-a", a.envelope(seq=50)), ring), Candidate)


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


@pytest.mark.parametrize(("case", "reason"), [
    ("sig-bitflip", QuarantineReason.BAD_SIGNATURE),
    ("payload-bitflip", QuarantineReason.MALFORMED),
    ("garbage", QuarantineReason.MALFORMED),
    ("truncated", QuarantineReason.MALFORMED),
    ("unknown-key", QuarantineReason.UNKNOWN_KEY),
    ("other-agents-envelope", QuarantineReason.TOPIC_MISMATCH),
    ("oversized", QuarantineReason.OVERSIZED),
    ("bad-topic", QuarantineReason.BAD_TOPIC),
])
def test_bad_messages_are_quarantined_with_their_reason(
    world: tuple[Agent, Agent, Keyring], case: str, reason: QuarantineReason,
) -> None:
    a, b, ring = world
    good = a.envelope()
    m = {
        "sig-bitflip": msg("tx-a", flip(good, len(good) - 3)),
        "payload-bitflip": msg("tx-a", flip(good, len(good) // 2)),
        "garbage": msg("tx-a", b"\x00\x01garbage"),
        "truncated": msg("tx-a", good[:-10]),
        "unknown-key": msg("tx-a", Agent("tx-a", key_from_byte(9)).envelope()),
        "other-agents-envelope": msg("tx-a", b.envelope()),
        "oversized": msg("tx-a", good),
        "bad-topic": Incoming("wattrail/v1/tx-a/nope", good, 1, T0),
    }[case]
    out = classify(m, ring, max_bytes=len(good) - 1 if case == "oversized" else 1 << 20)
    assert isinstance(out, Quarantine)
    # a bit flip inside the payload may break the CBOR or only the signature: both are right
    allowed = {reason, QuarantineReason.BAD_SIGNATURE} if case == "payload-bitflip" else {reason}
    assert out.reason in allowed, out.detail
    assert out.detail
    assert len(out.envelope_hash) == 32
