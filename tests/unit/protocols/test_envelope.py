"""The envelope codec: deterministic CBOR payload and COSE_Sign1 (protocols/envelope/)."""

from __future__ import annotations

import contextlib

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.envelope import (
    GENESIS_PREV_HASH,
    ClockStatus,
    Payload,
    cbor,
    decode_payload,
    decode_sign1,
    encode_payload,
    encode_sign1,
    protected_header,
    sig_structure,
)
from protocols.envelope.errors import (
    EnvelopeEncodeError,
    EnvelopeError,
    IncompleteEnvelope,
    MalformedEnvelope,
)
from protocols.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from protocols.reading import MEASURED_FIELDS, Quality, Reading

KID = bytes(range(16))
SIG = bytes(range(64))
U64 = 2**64 - 1


def sample_payload(seq: int = 7) -> Payload:
    readings = [
        Reading("m-1", 1_700_000_000_000, import_wh=12345.5, v_l1=230.1, pf=0.98, status=3),
        Reading("m-2", 1_700_000_000_250, quality=Quality.COMMS_LOST),
    ]
    prev = GENESIS_PREV_HASH if seq == 1 else b"\xab" * 32
    return Payload("agent-a", KID, seq, prev, 1_700_000_001_000, ClockStatus.SYNCED, readings)


def sample_doc() -> dict:
    """The sample payload as a plain CBOR document, to build variants of it."""
    doc = cbor2.loads(encode_payload(sample_payload()))
    assert isinstance(doc, dict) and set(doc) == set(range(12))
    return doc


PAYLOAD = encode_payload(sample_payload())
ENVELOPE = encode_sign1(protected_header(KID), PAYLOAD, SIG)

# --- the CBOR layer against RFC 8949 Appendix A ---------------------------------------------

RFC8949_EXAMPLES = [
    (0, "00"), (23, "17"), (24, "1818"), (100, "1864"), (1000, "1903e8"), (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"), (U64, "1bffffffffffffffff"), (-1, "20"), (-10, "29"),
    (-100, "3863"), (-1000, "3903e7"), (0.0, "f90000"), (-0.0, "f98000"), (1.0, "f93c00"),
    (1.1, "fb3ff199999999999a"), (1.5, "f93e00"), (65504.0, "f97bff"), (100000.0, "fa47c35000"),
    (3.4028234663852886e38, "fa7f7fffff"), (1.0e300, "fb7e37e43c8800759c"),
    (5.960464477539063e-8, "f90001"), (0.00006103515625, "f90400"), (-4.0, "f9c400"),
    (-4.1, "fbc010666666666666"), (False, "f4"), (True, "f5"), (None, "f6"), ("", "60"),
    ("a", "6161"), ("IETF", "6449455446"), ("\u00fc", "62c3bc"), (b"", "40"), (b"\x01\x02", "420102"),
    ([], "80"), ([1, 2, 3], "83010203"), ({}, "a0"), ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    ({24: 0, -1: 0}, "a21818002000"),  # §4.2.1 bytewise order: 0x18 < 0x20 (RFC 7049 differs)
]


@pytest.mark.parametrize(("value", "hex_"), RFC8949_EXAMPLES, ids=[h for _, h in RFC8949_EXAMPLES])
def test_cbor_matches_rfc8949_examples(value, hex_):
    assert cbor.encode(value).hex() == hex_
    decoded = cbor.decode(bytes.fromhex(hex_))
    assert decoded == value and type(decoded) is type(value)


@pytest.mark.parametrize(
    "hex_",
    [
        pytest.param("1817", id="int-head-too-long"),
        pytest.param("190017", id="int-2-bytes-for-1"),
        pytest.param("1a0000ffff", id="int-4-bytes-for-2"),
        pytest.param("1b00000000ffffffff", id="int-8-bytes-for-4"),
        pytest.param("fa3fc00000", id="float32-for-float16"),
        pytest.param("fb3ff8000000000000", id="float64-for-float16"),
        pytest.param("9f01ff", id="indefinite-array"),
        pytest.param("5f4101ff", id="indefinite-bytes"),
        pytest.param("a203040102", id="map-keys-unsorted"),
        pytest.param("a201020103", id="map-key-duplicated"),
        pytest.param("f97e00", id="nan"),
        pytest.param("f97c00", id="infinity"),
        pytest.param("f7", id="undefined"),
        pytest.param("f0", id="simple-16"),
        pytest.param("c11a5f5e1000", id="tag-epoch"),
        pytest.param("62c328", id="invalid-utf8"),
        pytest.param("a1f501", id="bool-map-key"),
        pytest.param("a1410101", id="bytes-map-key"),
        pytest.param("1c", id="reserved-ai"),
        pytest.param("0000", id="trailing-byte"),
        pytest.param("81" * 40 + "00", id="too-deep"),
    ],
)
def test_cbor_rejects_non_deterministic_or_unsupported(hex_):
    with pytest.raises(MalformedEnvelope):
        cbor.decode(bytes.fromhex(hex_))


def test_cbor_refuses_to_encode_what_it_cannot_decode():
    for bad in (float("nan"), float("inf"), 2**64, -(2**64) - 1, {1, 2}, 1j):
        with pytest.raises(EnvelopeEncodeError):
            cbor.encode(bad)  # type: ignore[arg-type]


# --- payload --------------------------------------------------------------------------------

floats = st.none() | st.floats(allow_nan=False, allow_infinity=False)
readings = st.builds(
    Reading,
    meter_id=st.text(min_size=1, max_size=12),
    ts_ms=st.integers(0, U64),
    status=st.integers(0, U64),
    quality=st.sampled_from(Quality),
    **{name: floats for name in MEASURED_FIELDS},
)


@st.composite
def payloads(draw) -> Payload:
    seq = draw(st.integers(1, U64))
    prev = GENESIS_PREV_HASH if seq == 1 else draw(st.binary(min_size=32, max_size=32))
    return Payload(
        agent_id=draw(st.text(min_size=1, max_size=20)),
        kid=draw(st.binary(min_size=16, max_size=16)),
        seq=seq,
        prev_hash=prev,
        sent_at_ms=draw(st.integers(0, U64)),
        clock=draw(st.sampled_from(ClockStatus)),
        readings=draw(st.lists(readings, max_size=4)),
    )


@given(payloads())
def test_payload_round_trip(payload):
    data = encode_payload(payload)
    assert decode_payload(data) == payload
    assert encode_payload(decode_payload(data)) == data
    # an independent decoder reads the same document
    doc = cbor2.loads(data)
    assert doc[1] == payload.agent_id and doc[3] == payload.seq
    assert doc[7] == [r.meter_id for r in payload.readings]
    assert list(doc[11]) == sorted(MEASURED_FIELDS, key=lambda n: (len(n.encode()), n.encode()))


def test_payload_ints_become_floats():
    """A Reading built with int 5 and one with 5.0 must give the same bytes (one meaning)."""
    p = sample_payload()
    head = (p.agent_id, p.kid, p.seq, p.prev_hash, p.sent_at_ms, p.clock)
    a = Payload(*head, [Reading("m", 1, import_wh=5)])
    b = Payload(*head, [Reading("m", 1, import_wh=5.0)])
    assert encode_payload(a) == encode_payload(b)
    assert type(decode_payload(encode_payload(a)).readings[0].import_wh) is float


def test_every_prefix_of_a_payload_is_incomplete():
    for i in range(len(PAYLOAD)):
        with pytest.raises(IncompleteEnvelope) as info:
            decode_payload(PAYLOAD[:i])
        assert info.value.offset == i


def variant(**changes) -> bytes:
    doc = sample_doc()
    for key, value in changes.items():
        k = int(key[1:])
        if value is DROP:
            del doc[k]
        else:
            doc[k] = value
    return cbor.encode(doc)


DROP = object()


def fields_with(**changes) -> dict:
    cols = sample_doc()[11]
    for name, value in changes.items():
        if value is DROP:
            del cols[name]
        else:
            cols[name] = value
    return cols


def reencoded_with_cbor2(**kwargs) -> bytes:
    return cbor2.dumps(sample_doc(), **kwargs)


MALFORMED_PAYLOADS = [
    pytest.param(variant(k12=0), "keys", id="unknown-key"),
    pytest.param(variant(k5=DROP), "keys", id="missing-key"),
    pytest.param(variant(k0=2), "version", id="version-2"),
    pytest.param(variant(k1=b"agent-a"), "schema", id="agent-id-bytes"),
    pytest.param(variant(k1=""), "schema", id="agent-id-empty"),
    pytest.param(variant(k3=0), "schema", id="seq-zero"),
    pytest.param(variant(k3=-7), "schema", id="seq-negative"),
    pytest.param(variant(k3=7.5), "schema", id="seq-float"),
    pytest.param(variant(k2=KID[:15]), "schema", id="kid-15-bytes"),
    pytest.param(variant(k4=b"\xab" * 31), "schema", id="prev-31-bytes"),
    pytest.param(variant(k3=1), "chain", id="seq1-nonzero-prev"),
    pytest.param(variant(k5=-1), "schema", id="sent-at-negative"),
    pytest.param(variant(k6=3), "schema", id="clock-unknown"),
    pytest.param(variant(k7="m-1"), "schema", id="meters-not-array"),
    pytest.param(variant(k8=[1]), "schema", id="ts-column-short"),
    pytest.param(variant(k10=[0, 3, 0]), "schema", id="quality-column-long"),
    pytest.param(variant(k10=[0, 9]), "schema", id="quality-unknown"),
    pytest.param(variant(k9=[True, 0]), "schema", id="status-bool"),
    pytest.param(variant(k7=["m-1", ""]), "schema", id="meter-id-empty"),
    pytest.param(variant(k11=fields_with(v_l1=[230.1])), "schema", id="field-column-short"),
    pytest.param(variant(k11=fields_with(v_l1=DROP)), "schema", id="field-column-missing"),
    pytest.param(variant(k11=fields_with(v_l4=[None, None])), "schema", id="field-column-unknown"),
    pytest.param(variant(k11=fields_with(pf=[1, None])), "schema", id="int-in-float-column"),
    pytest.param(variant(k11=fields_with(pf=["1", None])), "schema", id="text-in-float-column"),
    pytest.param(variant(k11=[[None, None]] * len(MEASURED_FIELDS)), "schema", id="fields-not-map"),
    pytest.param(cbor.encode([1, 2]), "structure", id="array-not-map"),
    pytest.param(reencoded_with_cbor2(), "non_deterministic", id="cbor2-default-float64"),
    pytest.param(cbor2.dumps(dict(reversed(sample_doc().items())), canonical=True), None,
                 id="cbor2-canonical-still-ok"),
    pytest.param(reencoded_with_cbor2(canonical=True, indefinite_containers=True), "non_deterministic",
                 id="indefinite-lengths"),
    pytest.param(PAYLOAD + b"\x00", "trailing_bytes", id="trailing-byte"),
    pytest.param(PAYLOAD.replace(b"\x03\x07", b"\x03\x18\x07", 1), "non_deterministic",
                 id="seq-overlong-head"),
    pytest.param(b"\xad" + PAYLOAD[1:] + b"\x03\x07", "non_deterministic", id="duplicate-key"),
    pytest.param(PAYLOAD.replace(b"\x05\x1b", b"\x05\xc1\x1b", 1), "tag", id="tagged-sent-at"),
    pytest.param(PAYLOAD.replace(b"agent-a", b"agent-\xff", 1), "type", id="agent-id-not-utf8"),
]


@pytest.mark.parametrize(("data", "reason"), MALFORMED_PAYLOADS)
def test_malformed_payloads(data, reason):
    if reason is None:  # the control: cbor2's canonical form coincides with ours for this schema
        assert decode_payload(data) == sample_payload()
        return
    with pytest.raises(MalformedEnvelope) as info:
        decode_payload(data)
    assert info.value.reason == reason, info.value


def test_malformed_payload_error_carries_agent_and_seq():
    with pytest.raises(MalformedEnvelope) as info:
        decode_payload(variant(k6=3))
    assert (info.value.agent_id, info.value.seq) == ("agent-a", 7)
    assert "agent 'agent-a', seq 7" in str(info.value)


def test_nan_in_payload_is_refused_on_both_sides():
    p = sample_payload()
    bad = Payload(p.agent_id, p.kid, p.seq, p.prev_hash, p.sent_at_ms, p.clock,
                  [Reading("m", 1, v_l1=float("nan"))])
    with pytest.raises(EnvelopeEncodeError) as info:
        encode_payload(bad)
    assert info.value.seq == 7 and isinstance(info.value, LocalProtocolError)
    nan_doc = variant(k11=fields_with(v_l1=[0.5, None])).replace(b"\xf9\x38\x00", b"\xf9\x7e\x00")
    with pytest.raises(MalformedEnvelope):
        decode_payload(nan_doc)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"agent_id": ""}, id="empty-agent"),
        pytest.param({"kid": b"x"}, id="short-kid"),
        pytest.param({"seq": 0}, id="seq-zero"),
        pytest.param({"seq": True}, id="seq-bool"),
        pytest.param({"seq": 2**64}, id="seq-too-big"),
        pytest.param({"seq": 1}, id="seq1-nonzero-prev"),
        pytest.param({"prev_hash": b"\x00" * 31}, id="short-prev"),
        pytest.param({"sent_at_ms": -1}, id="negative-sent-at"),
        pytest.param({"clock": 0}, id="clock-not-enum"),
        pytest.param({"readings": [Reading("", 1)]}, id="empty-meter-id"),
        pytest.param({"readings": [Reading("m", -1)]}, id="negative-ts"),
        pytest.param({"readings": [Reading("m", 1, quality=0)]}, id="quality-not-enum"),  # type: ignore[arg-type]
        pytest.param({"readings": [Reading("m", 1, pf="0.9")]}, id="text-field"),  # type: ignore[arg-type]
    ],
)
def test_encode_refuses_what_decode_would_reject(change):
    fields = {**{f: getattr(sample_payload(), f) for f in Payload.__slots__}, **change}
    with pytest.raises(EnvelopeEncodeError):
        encode_payload(Payload(**fields))


# --- COSE_Sign1 -----------------------------------------------------------------------------

@given(st.binary(min_size=16, max_size=16), st.binary(max_size=300), st.binary(min_size=64, max_size=64))
def test_sign1_round_trip(kid, payload, signature):
    protected = protected_header(kid)
    data = encode_sign1(protected, payload, signature)
    s = decode_sign1(data)
    assert (s.protected, s.kid, s.payload, s.signature) == (protected, kid, payload, signature)
    tag = cbor2.loads(data)  # an independent decoder sees a tagged COSE_Sign1
    assert tag.tag == 18 and list(tag.value) == [protected, {}, payload, signature]
    assert cbor2.loads(protected) == {1: -8, 4: kid}


def test_sig_structure_is_rfc9052_signature1():
    protected = protected_header(KID)
    assert cbor2.loads(sig_structure(protected, b"pay")) == ["Signature1", protected, b"", b"pay"]


def test_every_prefix_of_an_envelope_is_incomplete():
    for i in range(len(ENVELOPE)):
        with pytest.raises(IncompleteEnvelope):
            decode_sign1(ENVELOPE[:i])


def sign1(*items, tag: int | None = 18) -> bytes:
    body = list(items)
    return cbor.encode(cbor.Tagged(tag, body) if tag is not None else body)


PROT = protected_header(KID)
MALFORMED_ENVELOPES = [
    pytest.param(sign1(PROT, {}, PAYLOAD, SIG, tag=None), "tag", id="untagged"),
    pytest.param(sign1(PROT, {}, PAYLOAD, SIG, tag=98), "tag", id="tag-98-cose-sign"),
    pytest.param(sign1(PROT, {}, PAYLOAD, SIG, tag=17), "tag", id="tag-17-cose-mac0"),
    pytest.param(sign1(cbor.encode({1: -7, 4: KID}), {}, PAYLOAD, SIG), "header", id="alg-es256"),
    pytest.param(sign1(cbor.encode({1: "EdDSA", 4: KID}), {}, PAYLOAD, SIG), "header", id="alg-text"),
    pytest.param(sign1(cbor.encode({1: -8}), {}, PAYLOAD, SIG), "header", id="no-kid"),
    pytest.param(sign1(cbor.encode({1: -8, 3: 0, 4: KID}), {}, PAYLOAD, SIG), "header", id="extra-header"),
    pytest.param(sign1(cbor.encode({1: -8, 4: KID[:8]}), {}, PAYLOAD, SIG), "header", id="short-kid"),
    pytest.param(sign1(bytes.fromhex("a2045010") + KID + b"\x01\x27", {}, PAYLOAD, SIG), "header",
                 id="protected-not-deterministic"),
    pytest.param(sign1(PROT[:-1], {}, PAYLOAD, SIG), "header", id="protected-truncated-inside"),
    pytest.param(sign1({1: -8, 4: KID}, {}, PAYLOAD, SIG), "type", id="protected-not-bstr"),
    pytest.param(sign1(PROT, {4: KID}, PAYLOAD, SIG), "header", id="unprotected-not-empty"),
    pytest.param(sign1(PROT, {}, PAYLOAD, SIG[:63]), "signature", id="signature-63-bytes"),
    pytest.param(sign1(PROT, {}, PAYLOAD, None), "signature", id="signature-null"),
    pytest.param(sign1(PROT, {}, PAYLOAD), "structure", id="three-items"),
    pytest.param(sign1(PROT, {}, PAYLOAD, SIG, b""), "structure", id="five-items"),
    pytest.param(ENVELOPE + b"\xf6", "trailing_bytes", id="trailing-byte"),
    pytest.param(cbor2.dumps(cbor2.CBORTag(18, [PROT, {}, PAYLOAD, SIG]), indefinite_containers=True),
                 "non_deterministic", id="indefinite-array"),
    pytest.param(b"\xd8\x12" + ENVELOPE[1:], "non_deterministic", id="tag-overlong-head"),
    pytest.param(b"\xd2\xd2" + ENVELOPE[1:], "tag", id="double-tag"),
]


@pytest.mark.parametrize(("data", "reason"), MALFORMED_ENVELOPES)
def test_malformed_envelopes(data, reason):
    with pytest.raises(MalformedEnvelope) as info:
        decode_sign1(data)
    assert info.value.reason == reason, info.value


def test_encode_sign1_refuses_bad_parts():
    with pytest.raises(EnvelopeEncodeError):
        encode_sign1(PROT, PAYLOAD, SIG[:10])
    with pytest.raises(EnvelopeEncodeError):
        encode_sign1(cbor.encode({1: -7, 4: KID}), PAYLOAD, SIG)
    with pytest.raises(EnvelopeEncodeError):
        protected_header(b"short")


def test_error_hierarchy_separates_who_is_at_fault():
    assert issubclass(IncompleteEnvelope, EnvelopeError) and issubclass(MalformedEnvelope, EnvelopeError)
    assert issubclass(EnvelopeError, RemoteProtocolError) and issubclass(EnvelopeError, ProtocolError)
    assert issubclass(EnvelopeEncodeError, LocalProtocolError)
    assert not issubclass(EnvelopeEncodeError, RemoteProtocolError)


# --- fuzz: bytes either decode or raise our protocol error, nothing else --------------------

def _decode_both(data: bytes) -> None:
    for decode in (decode_sign1, decode_payload):
        with contextlib.suppress(EnvelopeError):  # anything else fails the test
            decode(data)


@settings(max_examples=400)
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    _decode_both(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_envelopes(data):
    target = data.draw(st.sampled_from([ENVELOPE, PAYLOAD]))
    buf = bytearray(target)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if op == "set":
            buf[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            buf.insert(pos, data.draw(st.integers(0, 255)))
        elif len(buf) > 1:
            del buf[pos]
    mutated = bytes(buf)
    _decode_both(mutated)
    if mutated != target and target is PAYLOAD:
        # a decodable mutation must round-trip to itself: no second encoding of one meaning
        with contextlib.suppress(EnvelopeError):
            assert encode_payload(decode_payload(mutated)) == mutated
