"""COSE_Sign1 (RFC 9052 §4.2, CBOR tag 18) as envelopes use it: pure bytes in, bytes out.

    envelope       = #6.18([protected: bstr, unprotected: {}, payload: bstr, signature: bstr .size 64])
    protected      = bstr .cbor {1: -8, 4: kid}     ; alg EdDSA, kid = 16 bytes
    Sig_structure  = ["Signature1", protected, h'', payload]

Only that one shape is accepted: the tag is required, the unprotected header is empty (a
verifier must never trust unsigned headers), the protected header carries exactly alg and kid,
and everything is in deterministic CBOR, so one signed message has one byte string and the
SHA-256 of the envelope bytes (the hash chain, the store's conflict check) is well defined.
No keys here: `security.keys` signs and `security.verify` checks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from protocols.envelope import cbor
from protocols.envelope.errors import EnvelopeEncodeError, EnvelopeError, MalformedEnvelope

COSE_SIGN1_TAG = 18
HEADER_ALG = 1
HEADER_KID = 4
ALG_EDDSA = -8
KID_LEN = 16  # first 16 bytes of SHA-256(raw Ed25519 public key), see security.keys
SIGNATURE_LEN = 64  # Ed25519


@dataclass(frozen=True, slots=True)
class Sign1:
    """A decoded envelope. `protected` is kept as bytes: the signature covers those bytes."""

    protected: bytes
    kid: bytes
    payload: bytes
    signature: bytes


def protected_header(kid: bytes) -> bytes:
    """The serialized protected header `{1: -8, 4: kid}`."""
    if len(kid) != KID_LEN:
        raise EnvelopeEncodeError(f"key id must be {KID_LEN} bytes, got {len(kid)}")
    return cbor.encode({HEADER_ALG: ALG_EDDSA, HEADER_KID: kid})


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """The bytes Ed25519 signs: `["Signature1", protected, h'', payload]` (RFC 9052 §4.4)."""
    return cbor.encode(["Signature1", protected, b"", payload])


def encode_sign1(protected: bytes, payload: bytes, signature: bytes) -> bytes:
    """The tagged COSE_Sign1 bytes. `protected` must come from `protected_header`."""
    if len(signature) != SIGNATURE_LEN:
        raise EnvelopeEncodeError(f"an Ed25519 signature is {SIGNATURE_LEN} bytes, got {len(signature)}")
    _kid_of(protected, local=True)
    return cbor.encode(cbor.Tagged(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


def decode_sign1(data: bytes) -> Sign1:
    """Parse envelope bytes; raises `IncompleteEnvelope` or `MalformedEnvelope`."""
    top = cbor.decode(data, allow_tag=COSE_SIGN1_TAG)
    if not isinstance(top, cbor.Tagged):
        raise MalformedEnvelope("not a COSE_Sign1: tag 18 missing", reason="tag")
    body = top.value
    if not isinstance(body, list) or len(body) != 4:
        raise MalformedEnvelope("COSE_Sign1 must be an array of 4 items", reason="structure")
    protected, unprotected, payload, signature = body
    if not isinstance(protected, bytes) or not isinstance(payload, bytes):
        raise MalformedEnvelope("protected header and payload must be byte strings", reason="type")
    if unprotected != {}:
        raise MalformedEnvelope("the unprotected header must be empty", reason="header")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_LEN:
        raise MalformedEnvelope(f"signature must be {SIGNATURE_LEN} bytes", reason="signature")
    kid = _kid_of(protected, local=False)
    return Sign1(protected=protected, kid=kid, payload=payload, signature=signature)


def envelope_hash(data: bytes) -> bytes:
    """SHA-256 of the envelope bytes: what the next envelope's prev hash and the log commit to."""
    return hashlib.sha256(data).digest()


def _kid_of(protected: bytes, *, local: bool) -> bytes:
    """The kid of a protected header; `local` says whose fault a bad header is (ours or the peer's)."""

    def fail(message: str) -> MalformedEnvelope | EnvelopeEncodeError:
        return EnvelopeEncodeError(message) if local else MalformedEnvelope(message, reason="header")

    try:
        header = cbor.decode(protected)
    except EnvelopeError as exc:  # even "incomplete" is malformed inside a complete bstr
        raise fail(f"protected header is not deterministic CBOR: {exc}") from exc
    if not isinstance(header, dict) or set(header) != {HEADER_ALG, HEADER_KID}:
        raise fail("protected header must be exactly {1: alg, 4: kid}")
    alg = header[HEADER_ALG]
    if isinstance(alg, bool) or alg != ALG_EDDSA:
        raise fail(f"algorithm {alg!r} is not EdDSA (-8)")
    kid = header[HEADER_KID]
    if not isinstance(kid, bytes) or len(kid) != KID_LEN:
        raise fail(f"kid must be {KID_LEN} bytes")
    return kid
