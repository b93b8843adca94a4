"""Security campaign, bounded: bad envelopes mixed into a stream of valid ones through the real
pipeline (TLS Mosquitto, a real `wattrail ingest` process, TimescaleDB on a private services
instance). Every bad one must be quarantined with the right reason, replays acknowledged and
not stored twice, and not one valid reading rejected.

The attacker holds agent A's certificate, so it can publish only under A's topics; "another
agent's valid envelope re-sent under this agent" is therefore B's envelope under A's topic."""

from __future__ import annotations

import dataclasses
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cbor2
import psycopg
import pytest

from protocols.envelope import encode_payload, encode_sign1, envelope_hash, protected_header, sig_structure
from protocols.topics import topic
from security.keys import key_id, sign_envelope
from tests.support.mqtt import MqttTestClient
from wattrail.chaos import DAY, T0, Services, Signer, cert_for, key_from_byte, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_VALID = 200  # envelopes of agent A, 10 readings each: 2,000 valid readings
N_B = 30  # agent B's own (valid) chain, also the source of the topic_mismatch copies
FIRST_BAD, BAD_PER_VALID = 8, 2  # 2 bad after each valid seq 8..107: 200 bad messages
KINDS = ["payload_bitflip", "signature_bitflip", "unknown_key", "wrong_key_same_kid",
         "other_agents_envelope", "replay", "seq_regression", "far_future", "reencoded_cbor"]
EXPECTED_REASON = {
    "payload_bitflip": "bad_signature", "signature_bitflip": "bad_signature",
    "unknown_key": "unknown_key", "wrong_key_same_kid": "bad_signature",
    "other_agents_envelope": "topic_mismatch", "replay": None,  # duplicate: acked, not stored
    "seq_regression": "conflict", "far_future": "expired_key", "reencoded_cbor": "malformed",
}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    s = Services(tmp_path_factory.mktemp("svc-security"))
    try:
        yield s
    finally:
        s.down()


def flip(data: bytes, pos: int, bit: int = 0) -> bytes:
    b = bytearray(data)
    b[pos] ^= 1 << bit
    return bytes(b)


def bad_message(kind: str, n: int, a: Signer, b_chain: list[bytes], a_chain: list[bytes],
                seq: int) -> bytes:
    """The n-th bad message, injected right after A's valid envelope `seq`."""
    x = key_from_byte(200)  # never registered
    prev = envelope_hash(a_chain[seq - 2]) if seq > 1 else b""
    target = seq - 5  # an envelope stored a while ago
    target_prev = envelope_hash(a_chain[target - 2]) if target > 1 else b""
    if kind == "payload_bitflip":  # a meter id letter changes ('m' -> 'l'): still valid CBOR
        data = a_chain[seq - 1]
        return flip(data, data.index(f"-m{n % a.readings}".encode()) + 1)
    if kind == "signature_bitflip":
        return flip(a_chain[seq - 1], len(a_chain[seq - 1]) - 1 - n % 64, n % 8)
    if kind == "unknown_key":
        p = dataclasses.replace(a.payload(seq, prev), kid=key_id(x))
        return sign_envelope(x, key_id(x), encode_payload(p))
    if kind == "wrong_key_same_kid":  # claims A's key id, signed by another key
        protected, body = protected_header(key_id(a.key)), encode_payload(a.payload(seq, prev))
        return encode_sign1(protected, body, x.sign(sig_structure(protected, body)))
    if kind == "other_agents_envelope":
        return b_chain[n // len(KINDS)]  # each of B's envelopes once
    if kind == "replay":
        return a_chain[target - 1]
    if kind == "seq_regression":  # a stored seq again, correctly signed, other readings
        return a.sign(a.payload(target, target_prev, variant=n + 1))
    if kind == "far_future":  # a year ahead: outside the key's validity
        return a.sign(a.payload(seq, prev, sent_at_ms=T0 + 365 * DAY + n))
    if kind == "reencoded_cbor":  # same meaning, map keys in another order, validly signed
        doc = cbor2.loads(encode_payload(a.payload(seq, prev)))
        assert isinstance(doc, dict) and len(doc) > 1
        raw = cbor2.dumps(dict(reversed(list(doc.items()))))
        assert cbor2.loads(raw) == doc and raw != encode_payload(a.payload(seq, prev))
        return sign_envelope(a.key, key_id(a.key), raw)
    raise AssertionError(kind)


def test_bad_envelopes_are_all_quarantined_and_no_valid_reading_is_rejected(
    svc: Services, tmp_path: Path,
) -> None:
    tag = uuid.uuid4().hex[:5]
    a = Signer(f"sec-{tag}-a", key_from_byte(61), 10)
    b = Signer(f"sec-{tag}-b", key_from_byte(62), 10)
    a_chain, b_chain = a.chain(N_VALID), b.chain(N_B)
    dsn = svc.new_db([cert_for(a.key, a.agent_id), cert_for(b.key, b.agent_id)])
    ing = svc.ingestor(dsn, f"sec{tag}")
    svc.wait_subscribed(ing)
    clients = {}
    for s in (a, b):
        cert, key = svc.issue(s.agent_id)
        c = MqttTestClient(svc.host, svc.port, svc.ca, cert, key, client_id=f"{s.agent_id}-x")
        assert c.connect()
        clients[s.agent_id] = c
    expected: dict[bytes, str] = {}
    kinds: Counter[str] = Counter()
    try:
        for data in b_chain:
            assert not clients[b.agent_id].publish(topic(b.agent_id, "readings"), data).is_failure
        n = 0
        for seq in range(1, N_VALID + 1):
            pa = clients[a.agent_id]
            assert not pa.publish(topic(a.agent_id, "readings"), a_chain[seq - 1]).is_failure
            if FIRST_BAD <= seq < FIRST_BAD + 200 // BAD_PER_VALID:
                for _ in range(BAD_PER_VALID):
                    kind = KINDS[n % len(KINDS)]
                    msg = bad_message(kind, n, a, b_chain, a_chain, seq)
                    assert not pa.publish(topic(a.agent_id, "readings"), msg).is_failure
                    if EXPECTED_REASON[kind] is not None:
                        digest = hashlib.sha256(msg).digest()
                        assert digest not in expected, f"{kind} repeated a message"
                        expected[digest] = EXPECTED_REASON[kind]  # type: ignore[assignment]
                    kinds[kind] += 1
                    n += 1
        assert n == 200

        def seen() -> tuple[int, int]:
            with psycopg.connect(dsn) as c:
                e = c.execute("SELECT count(*) FROM envelopes").fetchone()
                q = c.execute("SELECT count(*) FROM quarantine").fetchone()
            return (e[0] if e else 0, q[0] if q else 0)

        assert wait_until(lambda: seen() == (N_VALID + N_B, len(expected)), 60, 0.25), seen()
        time.sleep(1.0)  # anything late (a replay stored twice) would show now
    finally:
        for c in clients.values():
            c.close()
        ing.terminate()
        ing.wait(15)

    with psycopg.connect(dsn) as c:
        quarantined = {bytes(s): (r, int(k)) for s, r, k in
                       c.execute("SELECT sha256, reason, count FROM quarantine")}
        stored = {bytes(s) for (s,) in c.execute("SELECT sha256 FROM envelopes")}
        total, distinct = c.execute(  # type: ignore[misc]
            "SELECT count(*), count(DISTINCT (meter_id, ts)) FROM readings").fetchone()
    # every bad message quarantined once, with its reason
    assert {s: r for s, (r, _k) in quarantined.items()} == expected
    assert all(k == 1 for _r, k in quarantined.values())
    # no valid envelope or reading rejected, none stored twice, nothing foreign stored
    assert stored == {hashlib.sha256(e).digest() for e in a_chain + b_chain}
    assert (total, distinct) == ((N_VALID + N_B) * 10, (N_VALID + N_B) * 10)
    assert min(kinds.values()) >= 20 and set(kinds) == set(KINDS), kinds
    by_reason = Counter(expected.values())
    assert by_reason == {"bad_signature": kinds["payload_bitflip"] + kinds["signature_bitflip"]
                         + kinds["wrong_key_same_kid"], "unknown_key": kinds["unknown_key"],
                         "topic_mismatch": kinds["other_agents_envelope"],
                         "conflict": kinds["seq_regression"], "expired_key": kinds["far_future"],
                         "malformed": kinds["reencoded_cbor"]}
