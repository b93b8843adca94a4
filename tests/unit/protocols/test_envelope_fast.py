"""The fast decoding path (cbor2's C codec) must agree with the strict reference decoder on
every input: same payload when both accept, and it may never accept what strict refuses."""

from __future__ import annotations

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.envelope import Payload, decode_payload, encode_payload
from protocols.envelope_errors import EnvelopeError
from tests.unit.protocols.test_envelope import payloads


def outcome(data: bytes, *, strict_only: bool) -> Payload | str:
    try:
        return decode_payload(data, strict_only=strict_only)
    except EnvelopeError as exc:
        return type(exc).__name__


@settings(max_examples=150, deadline=None)
@given(payloads())
def test_cbor2_canonical_form_is_our_deterministic_form(payload: Payload) -> None:
    data = encode_payload(payload)
    assert cbor2.dumps(cbor2.loads(data), canonical=True) == data
    assert decode_payload(data) == decode_payload(data, strict_only=True) == payload


@settings(max_examples=300, deadline=None)
@given(payloads(), st.data())
def test_fast_and_strict_agree_on_mutations(payload: Payload, data: st.DataObject) -> None:
    raw = bytearray(encode_payload(payload))
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if kind == "flip" and raw:
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "insert":
            raw.insert(at, data.draw(st.integers(0, 255)))
        elif kind == "delete" and raw:
            del raw[at]
        elif kind == "truncate":
            del raw[at:]
    fast = outcome(bytes(raw), strict_only=False)
    strict = outcome(bytes(raw), strict_only=True)
    if isinstance(strict, str):
        assert isinstance(fast, str), "the fast path accepted what the strict decoder refuses"
    else:
        assert fast == strict


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_fast_path_never_accepts_junk_strict_refuses(junk: bytes) -> None:
    strict = outcome(junk, strict_only=True)
    if isinstance(strict, str):
        assert isinstance(outcome(junk, strict_only=False), str)


def test_noncanonical_reencoding_is_still_refused() -> None:
    """Same meaning, other bytes (a float widened to 64 bits) is caught by the fast path too."""
    from tests.unit.protocols.test_envelope import sample_payload

    data = encode_payload(sample_payload())
    doc = cbor2.loads(data)
    widened = cbor2.dumps(doc, canonical=False)
    if widened != data:
        assert isinstance(outcome(widened, strict_only=False), str)
