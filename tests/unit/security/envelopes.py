"""Build signed envelope chains for the security tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.envelope import GENESIS_PREV_HASH, ClockStatus, Payload, encode_payload, envelope_hash
from protocols.reading import Reading
from security.keyring import KeyCertificate
from security.keys import key_id, raw_public_key, sign_envelope

T0 = 1_700_000_000_000
DAY = 86_400_000


def key_from_byte(b: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([b]) * 32)


def cert_for(key: Ed25519PrivateKey, agent_id: str, **kw: int | None) -> KeyCertificate:
    fields = {"valid_from_ms": T0 - DAY, "valid_to_ms": T0 + 30 * DAY, "from_seq": 1, **kw}
    return KeyCertificate(agent_id, key_id(key), raw_public_key(key), **fields)  # type: ignore[arg-type]


@dataclass
class Agent:
    """An agent that signs consecutive envelopes, as the edge would."""

    agent_id: str
    key: Ed25519PrivateKey
    seq: int = 0
    prev: bytes = GENESIS_PREV_HASH
    sent: list[bytes] = field(default_factory=list)

    def envelope(self, *, seq: int | None = None, prev: bytes | None = None, sent_at_ms: int | None = None,
                 meter: str = "m-1", key: Ed25519PrivateKey | None = None, advance: bool = True) -> bytes:
        key = key or self.key
        s = self.seq + 1 if seq is None else seq
        p = self.prev if prev is None else prev
        if s == 1:
            p = GENESIS_PREV_HASH
        sent_at = T0 + s * 1000 if sent_at_ms is None else sent_at_ms
        payload = Payload(self.agent_id, key_id(key), s, p, sent_at, ClockStatus.SYNCED,
                          [Reading(meter, sent_at - 500, import_wh=1000.0 + s)])
        data = sign_envelope(key, key_id(key), encode_payload(payload))
        if advance:
            self.seq, self.prev = s, envelope_hash(data)
            self.sent.append(data)
        return data
