"""The signed envelope, the one message an edge agent sends (docs/wire-format.md).

    payload.py   the payload map: one poll cycle of one agent, as deterministic CBOR
    cose.py      the COSE_Sign1 wrapper (protected header, Sig_structure), after RFC 9052
    cbor.py      the strict deterministic CBOR reader and writer both build on
    errors.py    the typed errors: MalformedEnvelope, IncompleteEnvelope, EnvelopeEncodeError

Callers import from here; the submodules are the package's own rooms.
"""

from __future__ import annotations

from protocols.envelope.payload import (
    FORMAT_VERSION,
    GENESIS_PREV_HASH,
    ClockStatus,
    Payload,
    Sign1,
    decode_payload,
    decode_sign1,
    encode_payload,
    encode_sign1,
    envelope_hash,
    protected_header,
    sig_structure,
)

__all__ = [
    "FORMAT_VERSION",
    "GENESIS_PREV_HASH",
    "ClockStatus",
    "Payload",
    "Sign1",
    "decode_payload",
    "decode_sign1",
    "encode_payload",
    "encode_sign1",
    "envelope_hash",
    "protected_header",
    "sig_structure",
]
