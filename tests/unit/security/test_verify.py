"""verify_envelope: one verdict per input, for the ingestor and the auditor alike."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.envelope import (
    decode_sign1,
    encode_payload,
    encode_sign1,
    envelope_hash,
    protected_header,
    sig_structure,
)
from protocols.envelope.errors import IncompleteEnvelope
from security.chain import ChainState, ChainStatus
from security.keyring import Keyring, KeyringError
from security.keys import key_id
from security.verify import STORABLE, Status, verify_envelope

from .envelopes import DAY, T0, Agent, cert_for, key_from_byte

AGENT = "agent-a"


@pytest.fixture
def agent() -> Agent:
    return Agent(AGENT, key_from_byte(1))


@pytest.fixture
def keyring(agent: Agent) -> Keyring:
    return Keyring([cert_for(agent.key, AGENT)])


def run(envelopes, keyring, chain=None):
    chain = chain or ChainState()
    return [verify_envelope(e, keyring, chain) for e in envelopes], chain


def test_a_clean_chain_is_ok(agent, keyring):
    envs = [agent.envelope() for _ in range(5)]
    verdicts, chain = run(envs, keyring)
    assert [v.status for v in verdicts] == [Status.OK] * 5
    assert [v.seq for v in verdicts] == [1, 2, 3, 4, 5]
    assert all(v.agent_id == AGENT and v.kid == key_id(agent.key) and v.storable for v in verdicts)
    assert verdicts[2].payload is not None and verdicts[2].payload.readings[0].import_wh == 1003.0
    assert verdicts[4].envelope_hash == envelope_hash(envs[4])
    assert chain.agent(AGENT).head_seq == 5 and chain.missing(AGENT) == []


def _flip_signature(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def _scenario(status: Status, agent: Agent, keyring: Keyring):
    """Envelopes before the one under test, and the one under test; every Status appears once."""
    a = agent
    if status is Status.OK:
        return [a.envelope()], a.envelope()
    if status is Status.MALFORMED:
        return [], a.envelope()[:-3]
    if status is Status.BAD_SIGNATURE:
        return [], _flip_signature(a.envelope())
    if status is Status.UNKNOWN_KEY:
        return [], a.envelope(key=key_from_byte(9))
    if status is Status.REVOKED_KEY:
        keyring.revoke(AGENT, key_id(a.key), at_ms=T0 + 1500)
        return [a.envelope()], a.envelope()  # seq 1 sent at T0+1000 is fine, seq 2 at T0+2000 is not
    if status is Status.EXPIRED_KEY:
        return [], a.envelope(sent_at_ms=T0 + 31 * DAY)
    if status is Status.REPLAY:
        first = a.envelope()
        return [first], first
    if status is Status.CONFLICT:
        first = a.envelope()
        return [first], Agent(AGENT, a.key).envelope(meter="m-forged")
    if status is Status.GAP:
        before = [a.envelope()]
        a.envelope(), a.envelope()  # seqs 2 and 3 are lost
        return before, a.envelope()
    if status is Status.REORDERED:
        e1, e2, e3 = a.envelope(), a.envelope(), a.envelope()
        return [e1, e3], e2
    raise AssertionError(status)


@pytest.mark.parametrize("status", list(Status), ids=[s.value for s in Status])
def test_every_verdict_status(status, agent, keyring):
    before, under_test = _scenario(status, agent, keyring)
    chain = ChainState()
    for e in before:
        assert verify_envelope(e, keyring, chain).storable
    verdict = verify_envelope(under_test, keyring, chain)
    assert verdict.status is status, verdict.reason
    assert verdict.storable == (status in STORABLE)
    assert verdict.reason
    if status is not Status.MALFORMED:
        assert verdict.agent_id == AGENT and verdict.payload is not None
    if status is Status.GAP:
        assert verdict.missing == (2, 3) and chain.missing(AGENT) == [(2, 3)]


def test_malformed_verdict_keeps_what_was_known(agent, keyring):
    data = agent.envelope()
    sign1 = decode_sign1(data)
    assert sign1.payload.endswith(b"\xf6")  # the last field column ends with a null
    junk_payload = sign1.payload[:-1] + b"\x60"  # "" where a float or null belongs
    v = verify_envelope(encode_sign1(sign1.protected, junk_payload, sign1.signature), keyring, ChainState())
    assert v.status is Status.MALFORMED and v.agent_id == AGENT and v.seq == 1
    cut = encode_sign1(sign1.protected, sign1.payload[:-1], sign1.signature)
    v = verify_envelope(cut, keyring, ChainState())
    assert v.status is Status.MALFORMED and v.reason.startswith("payload (inside a complete envelope) ends")


def test_kid_mismatch_between_header_and_payload_is_malformed(agent, keyring):
    other = key_from_byte(2)
    sign1 = decode_sign1(agent.envelope())
    protected = protected_header(key_id(other))
    forged = encode_sign1(protected, sign1.payload, other.sign(sig_structure(protected, sign1.payload)))
    keyring.add(cert_for(other, AGENT, from_seq=100))
    v = verify_envelope(forged, keyring, ChainState())
    assert v.status is Status.MALFORMED and "kid" in v.reason


def test_junk_never_changes_the_chain(agent, keyring):
    chain = ChainState()
    verify_envelope(_flip_signature(agent.envelope()), keyring, chain)
    verify_envelope(agent.envelope(key=key_from_byte(9)), keyring, chain)
    assert chain.agent(AGENT).head_seq == 0


def test_a_key_of_another_agent_is_unknown(agent, keyring):
    mallory = Agent("agent-m", key_from_byte(1))  # same key, but bound to agent-a only
    v = verify_envelope(mallory.envelope(), keyring, ChainState())
    assert v.status is Status.UNKNOWN_KEY


def test_every_single_bit_flip_is_rejected(agent, keyring):
    chain = ChainState()
    verify_envelope(agent.envelope(), keyring, chain)
    data = agent.envelope()
    for i in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        v = verify_envelope(bytes(flipped), keyring, chain)
        assert v.status in (Status.MALFORMED, Status.BAD_SIGNATURE, Status.UNKNOWN_KEY), (i, v)
    assert verify_envelope(data, keyring, chain).status is Status.OK


def test_truncation_is_malformed_with_the_incomplete_reason(agent, keyring):
    v = verify_envelope(agent.envelope()[:40], keyring, ChainState())
    assert v.status is Status.MALFORMED and "truncated in transit" in v.reason
    with pytest.raises(IncompleteEnvelope):
        decode_sign1(agent.sent[-1][:40])


# --- the hash chain -------------------------------------------------------------------------

def test_broken_prev_hash_is_a_conflict(agent, keyring):
    chain = ChainState()
    verify_envelope(agent.envelope(), keyring, chain)
    v = verify_envelope(agent.envelope(prev=b"\x11" * 32), keyring, chain)
    assert v.status is Status.CONFLICT and "broken chain" in v.reason
    assert chain.agent(AGENT).head_seq == 1  # not recorded


def test_late_envelope_must_match_its_successor(agent, keyring):
    e1, e2, e3 = agent.envelope(), agent.envelope(), agent.envelope()
    forged2 = Agent(AGENT, agent.key, seq=1, prev=envelope_hash(e1)).envelope(meter="m-forged")
    chain = ChainState()
    assert [verify_envelope(e, keyring, chain).status for e in (e1, e3)] == [Status.OK, Status.GAP]
    v = verify_envelope(forged2, keyring, chain)
    assert v.status is Status.CONFLICT and "seq 3" in v.reason
    assert verify_envelope(e2, keyring, chain).status is Status.REORDERED
    assert chain.missing(AGENT) == []


def test_first_envelope_seen_above_one_is_a_gap_from_one(agent, keyring):
    envs = [agent.envelope() for _ in range(4)]
    v = verify_envelope(envs[3], keyring, ChainState())
    assert v.status is Status.GAP and v.missing == (1, 3)


def test_seeded_chain_continues_from_the_database_head(agent, keyring):
    envs = [agent.envelope() for _ in range(4)]
    chain = ChainState()
    chain.seed(AGENT, 3, envelope_hash(envs[2]))
    assert verify_envelope(envs[3], keyring, chain).status is Status.OK
    assert chain.missing(AGENT) == []
    wrong = ChainState()
    wrong.seed(AGENT, 3, b"\x00" * 32)
    assert verify_envelope(envs[3], keyring, wrong).status is Status.CONFLICT


def test_chain_statuses_are_verdict_statuses():
    assert {s.value for s in ChainStatus} <= {s.value for s in Status}


@settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(1, 9))), st.integers(0, 7))
def test_any_arrival_order_accepts_each_envelope_once(order, dup):
    agent = Agent(AGENT, key_from_byte(3))
    keyring = Keyring([cert_for(agent.key, AGENT)])
    envs = [agent.envelope() for _ in range(8)]
    chain = ChainState()
    statuses = [verify_envelope(envs[i - 1], keyring, chain).status for i in order]
    assert all(s in STORABLE for s in statuses)
    assert statuses[0] is (Status.OK if order[0] == 1 else Status.GAP)
    assert verify_envelope(envs[dup], keyring, chain).status is Status.REPLAY
    assert chain.missing(AGENT) == [] and chain.agent(AGENT).head_seq == 8


# --- key rotation ---------------------------------------------------------------------------

def test_rotation_old_key_before_new_key_from_seq(agent, keyring):
    new = key_from_byte(2)
    keyring.add(cert_for(new, AGENT, from_seq=3))
    chain = ChainState()
    old1, old2 = agent.envelope(), agent.envelope()
    assert [verify_envelope(e, keyring, chain).status for e in (old1, old2)] == [Status.OK, Status.OK]
    stale = agent.envelope(advance=False)  # old key at seq 3: retired
    v = verify_envelope(stale, keyring, chain)
    assert v.status is Status.REVOKED_KEY and "rotation" in v.reason
    assert verify_envelope(agent.envelope(key=new), keyring, chain).status is Status.OK
    # the old key's envelopes stay valid after the rotation (an auditor re-checking them)
    assert verify_envelope(old2, keyring, ChainState()).status is Status.GAP  # fresh chain: 1 missing
    early = Agent(AGENT, new).envelope()  # new key at seq 1, below its from_seq
    assert verify_envelope(early, keyring, ChainState()).status is Status.EXPIRED_KEY


def test_revocation_keeps_earlier_history(agent, keyring):
    envs = [agent.envelope() for _ in range(3)]  # sent at T0+1000, +2000, +3000
    keyring.revoke(AGENT, key_id(agent.key), at_ms=T0 + 3000)
    verdicts, _ = run(envs, keyring)
    assert [v.status for v in verdicts] == [Status.OK, Status.OK, Status.REVOKED_KEY]


def test_revocation_is_judged_at_receipt_whatever_sent_at_claims(agent, keyring):
    keyring.revoke(AGENT, key_id(agent.key), at_ms=T0 + 5000)
    backdated = agent.envelope(sent_at_ms=T0 + 1000)  # signed with the stolen key, dated before
    assert verify_envelope(backdated, keyring, ChainState()).status is Status.OK  # no receipt known
    late = verify_envelope(backdated, keyring, ChainState(), received_at_ms=T0 + 5000)
    assert late.status is Status.REVOKED_KEY and "received at" in late.reason
    early = verify_envelope(backdated, keyring, ChainState(), received_at_ms=T0 + 4999)
    assert early.status is Status.OK
    # the claimed sent-at still counts too: received early but dated after the revocation
    future = agent.envelope(sent_at_ms=T0 + 6000)
    assert verify_envelope(future, keyring, ChainState(), received_at_ms=T0 + 10).status \
        is Status.REVOKED_KEY


def test_key_not_yet_valid_is_expired(agent):
    keyring = Keyring([cert_for(agent.key, AGENT, valid_from_ms=T0 + 5000)])
    assert verify_envelope(agent.envelope(), keyring, ChainState()).status is Status.EXPIRED_KEY


def test_keyring_rejects_inconsistent_certificates(agent):
    good = cert_for(agent.key, AGENT)
    with pytest.raises(KeyringError):
        type(good)(AGENT, b"\x00" * 16, good.public_key, 0, 1)  # kid is not the key's
    with pytest.raises(KeyringError):
        cert_for(agent.key, AGENT, valid_from_ms=10, valid_to_ms=5)
    keyring = Keyring([good])
    with pytest.raises(KeyringError):
        keyring.add(cert_for(key_from_byte(2), AGENT, from_seq=1))  # two keys take over at seq 1
    with pytest.raises(KeyringError):
        keyring.revoke(AGENT, b"\x01" * 16, at_ms=0)


def test_payload_encoding_is_what_was_signed(agent, keyring):
    data = agent.envelope()
    v = verify_envelope(data, keyring, ChainState())
    assert v.payload is not None and encode_payload(v.payload) == decode_sign1(data).payload
