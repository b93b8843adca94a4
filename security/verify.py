"""`verify_envelope`: the one verdict the cloud ingestor and the offline auditor both trust.

Checks, in order; the first failure is the verdict:
  1. decode COSE_Sign1 and the payload, protected kid == payload kid  -> malformed
  2. (agent id, kid) in the keyring                                   -> unknown_key
  3. Ed25519 over the Sig_structure                                   -> bad_signature
  4. rotation: a successor key in force at this seq                   -> revoked_key
     revocation: received (cloud clock) or sent-at at or after revoked_at -> revoked_key
  5. seq below the key's from_seq, sent-at outside validity           -> expired_key
  6. hash chain (security/chain.py): ok / gap / reordered are recorded and storable;
     replay / conflict (incl. a broken prev-hash link) are not.
The chain state changes only for envelopes that passed 1-5, so junk cannot poison it.
Verdicts never raise for bad input: every byte string gets a status. The caller must still
check that `verdict.agent_id` matches the MQTT topic / TLS identity it arrived under.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocols.envelope import Payload, decode_payload, decode_sign1, envelope_hash, sig_structure
from protocols.envelope.errors import EnvelopeError, IncompleteEnvelope
from security.chain import ChainState
from security.keyring import Keyring


class Status(enum.StrEnum):
    OK = "ok"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    REVOKED_KEY = "revoked_key"
    EXPIRED_KEY = "expired_key"
    MALFORMED = "malformed"
    REPLAY = "replay"
    CONFLICT = "conflict"
    GAP = "gap"
    REORDERED = "reordered"


STORABLE = frozenset({Status.OK, Status.GAP, Status.REORDERED})


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    reason: str  # for humans: what was wrong and, where it helps, what to look at
    agent_id: str | None = None
    seq: int | None = None
    kid: bytes | None = None
    payload: Payload | None = None  # set whenever the payload decoded, whatever the status
    envelope_hash: bytes | None = None
    missing: tuple[int, int] | None = None  # GAP: the inclusive range of seqs skipped

    @property
    def storable(self) -> bool:
        """Signed by the right key and new: store it (a replay is acknowledged, not stored)."""
        return self.status in STORABLE


def verify_envelope(data: bytes, keyring: Keyring, chain: ChainState, *,
                    received_at_ms: int | None = None) -> Verdict:
    """`received_at_ms`: when the cloud received the envelope, by its own clock. A revocation is
    judged against it (the time the cloud trusts) and against the signed sent-at (which the
    agent chose): an envelope received at or after the revocation is `revoked_key` whatever it
    claims, so a stolen key cannot slip in by backdating. Without it (a bare envelope, no
    receipt on record) only the claimed sent-at can be judged."""
    try:
        sign1 = decode_sign1(data)
    except EnvelopeError as exc:
        return Verdict(Status.MALFORMED, str(exc), agent_id=exc.agent_id, seq=exc.seq)
    try:
        payload = decode_payload(sign1.payload)
    except IncompleteEnvelope as exc:
        # cut short inside a complete envelope: built wrong, not truncated in transit
        reason = f"payload (inside a complete envelope) ends early: {exc}"
        return Verdict(Status.MALFORMED, reason, agent_id=exc.agent_id, seq=exc.seq)
    except EnvelopeError as exc:
        return Verdict(Status.MALFORMED, str(exc), agent_id=exc.agent_id, seq=exc.seq)
    digest = envelope_hash(data)

    def verdict(status: Status, reason: str, missing: tuple[int, int] | None = None) -> Verdict:
        return Verdict(status, reason, payload.agent_id, payload.seq, payload.kid, payload, digest, missing)

    if sign1.kid != payload.kid:
        return verdict(Status.MALFORMED, "protected header kid differs from the payload kid")
    cert = keyring.get(payload.agent_id, payload.kid)
    if cert is None:
        return verdict(Status.UNKNOWN_KEY, f"no key {payload.kid.hex()} for this agent in the keyring")
    try:
        Ed25519PublicKey.from_public_bytes(cert.public_key).verify(
            sign1.signature, sig_structure(sign1.protected, sign1.payload)
        )
    except InvalidSignature:
        return verdict(Status.BAD_SIGNATURE, "Ed25519 signature does not match the signed bytes")
    successor = keyring.successor(cert)
    if successor is not None and payload.seq >= successor.from_seq:
        return verdict(
            Status.REVOKED_KEY,
            f"key retired by rotation: {successor.kid.hex()} signs from seq {successor.from_seq}",
        )
    if cert.revoked_at_ms is not None:
        if received_at_ms is not None and received_at_ms >= cert.revoked_at_ms:
            return verdict(Status.REVOKED_KEY,
                           f"key revoked at {cert.revoked_at_ms} ms, received at {received_at_ms} "
                           f"ms (claims to be sent at {payload.sent_at_ms} ms)")
        if payload.sent_at_ms >= cert.revoked_at_ms:
            return verdict(Status.REVOKED_KEY, f"key revoked at {cert.revoked_at_ms} ms, sent at or after")
    if payload.seq < cert.from_seq:
        return verdict(Status.EXPIRED_KEY, f"key signs only from seq {cert.from_seq}")
    if not cert.valid_from_ms <= payload.sent_at_ms <= cert.valid_to_ms:
        return verdict(
            Status.EXPIRED_KEY,
            f"sent at {payload.sent_at_ms} ms, key valid {cert.valid_from_ms}..{cert.valid_to_ms} ms",
        )
    result = chain.observe(payload.agent_id, payload.seq, payload.prev_hash, digest)
    return verdict(Status(result.status.value), result.reason, result.missing)
