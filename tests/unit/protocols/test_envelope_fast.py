"""The fast decoding path (cbor2's C codec) must agree with the strict reference decoder on
every input: same payload when both accept, and it may never accept what strict refuses."""

from __future__ import annotations

import contextlib

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.envelope import Payload, decode_payload, encode_payload
from protocols.envelope.errors import EnvelopeError
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


junk_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5)
    | st.binary(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(12)), junk_values, st.data())
def test_structured_junk_in_any_slot_is_a_protocol_error(key: int, junk: object,
                                                         data: st.DataObject) -> None:
    """Well-formed, deterministic CBOR with the wrong thing in one place (a list where a
    quality code goes, NaN in a column, ...) must be refused with our error, never crash."""
    from tests.unit.protocols.test_envelope import sample_payload

    doc = cbor2.loads(encode_payload(sample_payload()))
    target = doc
    if key in (7, 8, 9, 10) and doc[key]:
        target = doc[key]
        key = data.draw(st.integers(0, len(target) - 1))
    elif key == 11:
        target = doc[11][data.draw(st.sampled_from(sorted(doc[11])))]
        key = 0
    target[key] = junk
    raw = cbor2.dumps(doc, canonical=True)
    for strict_only in (False, True):
        with contextlib.suppress(EnvelopeError):
            decode_payload(raw, strict_only=strict_only)


@settings(max_examples=200, deadline=None)
@given(payloads())
def test_fast_encoder_gives_the_reference_bytes(payload: Payload) -> None:
    assert encode_payload(payload) == encode_payload(payload, strict_only=True)


def test_fast_encoder_refuses_what_the_reference_refuses() -> None:
    import dataclasses

    import pytest

    from protocols.envelope.errors import EnvelopeEncodeError
    from tests.unit.protocols.test_envelope import sample_payload

    p = sample_payload()
    for bad in (float("nan"), float("inf"), True, "5"):
        r = dataclasses.replace(p.readings[0], v_l1=bad)
        q = dataclasses.replace(p, readings=[r, *p.readings[1:]])
        for strict in (False, True):
            with pytest.raises(EnvelopeEncodeError):
                encode_payload(q, strict_only=strict)
