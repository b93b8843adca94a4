"""The security campaign's bad-envelope scenario: bad messages of every kind mixed into a
stream of valid ones, through the real pipeline. Each bad one must be quarantined once with
the right reason, replays acknowledged and not stored twice, and not one valid reading refused.

The attacker holds agent A's certificate, so it can publish only under A's topics; "another
agent's valid envelope re-sent under this agent" is therefore B's envelope under A's topic.
Both agents publish with raw MQTT clients (no outbox: what is sent is exactly what is listed)."""

from __future__ import annotations

import dataclasses
import hashlib
import ssl
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from cloud.store import envelopes_sql, quarantine_sql
from protocols.envelope import encode_payload, encode_sign1, envelope_hash, protected_header, sig_structure
from protocols.topics import topic
from security.keys import key_id, sign_envelope
from wattrail.chaos.fleet import DAY, T0, Scale, Signer, cert_for, key_from_byte
from wattrail.chaos.results import Result, check
from wattrail.chaos.services import Services, wait_until

KINDS = ["payload_bitflip", "signature_bitflip", "unknown_key", "wrong_key_same_kid",
         "other_agents_envelope", "replay", "seq_regression", "far_future", "reencoded_cbor"]
EXPECTED_REASON: dict[str, str | None] = {
    "payload_bitflip": "bad_signature", "signature_bitflip": "bad_signature",
    "unknown_key": "unknown_key", "wrong_key_same_kid": "bad_signature",
    "other_agents_envelope": "topic_mismatch", "replay": None,  # duplicate: acked, not stored
    "seq_regression": "conflict", "far_future": "expired_key", "reencoded_cbor": "malformed",
}
FIRST_BAD = 8  # replays and regressions aim at seq - 5, which must already be stored


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
        if not isinstance(doc, dict) or len(doc) < 2:
            raise AssertionError("payloads are CBOR maps")
        raw = cbor2.dumps(dict(reversed(list(doc.items()))))
        return sign_envelope(a.key, key_id(a.key), raw)
    raise AssertionError(kind)


class _Pipelined:
    """A raw MQTT v5 publisher that keeps many QoS 1 messages in flight (order is kept on one
    connection) and returns every PUBACK reason code at the end."""

    def __init__(self, svc: Services, agent_id: str) -> None:
        cert, key = svc.issue(agent_id)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{agent_id}-x",
                                  protocol=mqtt.MQTTv5)
        self.client.tls_set(ca_certs=str(svc.ca), certfile=str(cert), keyfile=str(key),
                            cert_reqs=ssl.CERT_REQUIRED)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.failures: list[Any] = []
        self.client.on_publish = lambda _c, _u, _mid, rc, _p: (
            self.failures.append(rc) if rc.is_failure else None)
        self.infos: list[mqtt.MQTTMessageInfo] = []
        self.client.connect(svc.host, svc.port, keepalive=30)
        self.client.loop_start()

    def publish(self, t: str, data: bytes) -> None:
        self.infos.append(self.client.publish(t, data, qos=1))

    def finish(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        for info in self.infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        unacked = sum(not i.is_published() for i in self.infos)
        self.client.disconnect()
        self.client.loop_stop()
        return unacked + len(self.failures)


def scenario_bad_envelopes(svc: Services, scale: Scale, tmp: Path) -> Result:
    """`scale.bad_messages` bad messages of nine kinds mixed into agent A's
    `scale.bad_valid_envelopes` valid envelopes (and agent B's own chain)."""
    del tmp
    r = Result("bad-envelopes")
    tag = uuid.uuid4().hex[:5]
    n_valid, n_bad, per = scale.bad_valid_envelopes, scale.bad_messages, scale.bad_readings
    n_b = n_bad // len(KINDS) + 1
    a = Signer(f"sec-{tag}-a", key_from_byte(61), per)
    b = Signer(f"sec-{tag}-b", key_from_byte(62), per)
    a_chain, b_chain = a.chain(n_valid), b.chain(n_b)
    dsn = svc.new_db([cert_for(a.key, a.agent_id), cert_for(b.key, b.agent_id)])
    t0 = time.monotonic()
    ing = svc.ingestor(dsn, f"sec{tag}", max_batch=256)
    svc.wait_subscribed(ing)
    expected: dict[bytes, str] = {}
    kinds: Counter[str] = Counter()
    pub_a, pub_b = _Pipelined(svc, a.agent_id), _Pipelined(svc, b.agent_id)
    try:
        for data in b_chain:
            pub_b.publish(topic(b.agent_id, "readings"), data)
        n = 0
        slots = n_valid - FIRST_BAD + 1
        for seq in range(1, n_valid + 1):
            pub_a.publish(topic(a.agent_id, "readings"), a_chain[seq - 1])
            if seq < FIRST_BAD:
                continue
            due = -(-n_bad * (seq - FIRST_BAD + 1) // slots)  # spread evenly, ceil
            while n < due:
                kind = KINDS[n % len(KINDS)]
                msg = bad_message(kind, n, a, b_chain, a_chain, seq)
                pub_a.publish(topic(a.agent_id, "readings"), msg)
                reason = EXPECTED_REASON[kind]
                if reason is not None:
                    digest = hashlib.sha256(msg).digest()
                    if digest in expected:
                        raise AssertionError(f"{kind} repeated a message")
                    expected[digest] = reason
                kinds[kind] += 1
                n += 1
        refused = pub_a.finish(120 + n_valid / 50) + pub_b.finish(60)
        if refused:
            r.notes.append(f"{refused} publishes not acknowledged by the broker")

        def seen() -> tuple[int, int]:
            with psycopg.connect(dsn) as c:
                e = c.execute(envelopes_sql.COUNT).fetchone()
                q = c.execute(quarantine_sql.COUNT).fetchone()
            return (e[0] if e else 0, q[0] if q else 0)

        if not wait_until(lambda: seen() == (n_valid + n_b, len(expected)),
                          60 + n_valid / 100, 0.25):
            r.notes.append(f"stored/quarantined {seen()} != {(n_valid + n_b, len(expected))}")
        time.sleep(1.0)  # anything late (a replay stored twice) would show now
    finally:
        ing.terminate()
        ing.wait(15)
    r.seconds = time.monotonic() - t0
    with psycopg.connect(dsn) as c:
        quarantined = {bytes(s): (str(q), int(k)) for s, q, k in
                       c.execute(quarantine_sql.HASH_REASON_COUNT)}
    right = sum(1 for h, reason in expected.items() if quarantined.get(h, ("", 0))[0] == reason)
    wrong = sum(1 for h, reason in expected.items()
                if h in quarantined and quarantined[h][0] != reason)
    missing = sum(1 for h in expected if h not in quarantined)
    unexpected = sum(1 for h in quarantined if h not in expected)
    twice = sum(1 for _q, k in quarantined.values() if k != 1)
    res = check(dsn, {a.agent_id: a_chain, b.agent_id: b_chain}, per, r)
    res.expect_quarantine = len(expected)
    res.figures = {"bad_sent": n, "replays": kinds["replay"], "to_quarantine": len(expected),
                   "right_reason": right, "wrong_reason": wrong, "not_quarantined": missing,
                   "quarantined_unexpectedly": unexpected, "quarantined_twice": twice,
                   **{f"kind_{k}": float(v) for k, v in sorted(kinds.items())}}
    by_reason = Counter(expected.values())
    res.notes.append(f"{n} bad messages among {n_valid + n_b} valid envelopes "
                     f"({(n_valid + n_b) * per} readings): {right}/{len(expected)} quarantined "
                     f"with the right reason ({dict(sorted(by_reason.items()))}), {wrong} wrong "
                     f"reason, {missing} not quarantined, {kinds['replay']} replays acknowledged "
                     "as duplicates")
    if wrong or missing or unexpected or twice:
        res.notes.append("QUARANTINE MISMATCH")
    return res

