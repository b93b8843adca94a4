"""The test vectors of docs/wire-format.md, recomputed (Ed25519 is deterministic: RFC 8032).

vectors.json is the file another implementation checks itself against; if this test fails,
the wire format changed: that is a breaking change, not a fixture to regenerate.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.envelope import (
    GENESIS_PREV_HASH,
    ClockStatus,
    Payload,
    decode_payload,
    decode_sign1,
    encode_payload,
    envelope_hash,
    protected_header,
    sig_structure,
)
from protocols.reading import Quality, Reading
from security.chain import ChainState
from security.keyring import KeyCertificate, Keyring
from security.keys import key_id, raw_public_key, sign_envelope
from security.merkle import leaf_hash, root_hash
from security.tree_head import TreeHead, sign_tree_head
from security.verify import Status, verify_envelope

VECTORS = Path(__file__).with_name("vectors.json")
AGENT_SEED = bytes(range(0x01, 0x21))  # 01 02 ... 20
LOG_SEED = bytes(range(0x21, 0x41))  # 21 22 ... 40


def vector_payload(kid: bytes) -> Payload:
    return Payload(
        agent_id="agent-0001",
        kid=kid,
        seq=1,
        prev_hash=GENESIS_PREV_HASH,
        sent_at_ms=1_700_000_001_000,
        clock=ClockStatus.SYNCED,
        readings=[
            Reading("meter-A", 1_700_000_000_000, import_wh=123456.5, export_wh=0.0, v_l1=230.25,
                    i_l1=4.5, p_w=1035.0, pf=0.97, freq_hz=50.0, status=0, quality=Quality.VALID),
            Reading("meter-B", 1_700_000_000_500, status=1, quality=Quality.COMMS_LOST),
        ],
    )


def build_vectors() -> dict[str, object]:
    key = Ed25519PrivateKey.from_private_bytes(AGENT_SEED)
    kid = key_id(key)
    payload = encode_payload(vector_payload(kid))
    protected = protected_header(kid)
    envelope = sign_envelope(key, kid, payload)
    log_key = Ed25519PrivateKey.from_private_bytes(LOG_SEED)
    leaves = [leaf_hash(envelope)]
    head = TreeHead(tree_size=1, timestamp_ms=1_700_000_002_000, root_hash=root_hash(leaves))
    sth = sign_tree_head(log_key, head)
    return {
        "agent_private_key_seed": AGENT_SEED.hex(),
        "agent_public_key": raw_public_key(key).hex(),
        "kid": kid.hex(),
        "payload": payload.hex(),
        "protected_header": protected.hex(),
        "sig_structure": sig_structure(protected, payload).hex(),
        "signature": decode_sign1(envelope).signature.hex(),
        "envelope": envelope.hex(),
        "envelope_sha256": envelope_hash(envelope).hex(),
        "log_private_key_seed": LOG_SEED.hex(),
        "log_public_key": raw_public_key(log_key).hex(),
        "log_leaf_hash": leaves[0].hex(),
        "sth_tree_size": head.tree_size,
        "sth_timestamp_ms": head.timestamp_ms,
        "sth_signed_bytes": head.to_be_signed().hex(),
        "sth_signature": sth.signature.hex(),
    }


def test_vectors_match_the_file():
    assert build_vectors() == json.loads(VECTORS.read_text())


def test_vectors_are_self_consistent():
    v = json.loads(VECTORS.read_text())
    env, payload = bytes.fromhex(v["envelope"]), bytes.fromhex(v["payload"])
    assert hashlib.sha256(env).hexdigest() == v["envelope_sha256"]
    assert bytes.fromhex(v["sig_structure"]).endswith(payload)  # payload is the last bstr
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(v["agent_private_key_seed"]))
    key.public_key().verify(bytes.fromhex(v["signature"]), bytes.fromhex(v["sig_structure"]))
    decoded = decode_payload(payload)
    assert decoded == vector_payload(bytes.fromhex(v["kid"]))
    cert = KeyCertificate("agent-0001", bytes.fromhex(v["kid"]), bytes.fromhex(v["agent_public_key"]),
                          valid_from_ms=0, valid_to_ms=2**62)
    assert verify_envelope(env, Keyring([cert]), ChainState()).status is Status.OK
    assert bytes.fromhex(v["log_leaf_hash"]) == hashlib.sha256(b"\x00" + env).digest()
