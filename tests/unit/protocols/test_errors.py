"""Bad input: every prefix is incomplete, a malformed table, field-level decode errors, fuzz."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.decode import FailureReason, decode_payloads, decode_reading
from protocols.encode import encode_reading, layout_blocks
from protocols.errors import (
    IncompleteResponse,
    LocalProtocolError,
    MalformedResponse,
    PlanError,
    ProtocolError,
    RemoteProtocolError,
)
from protocols.maps import MAP_NAMES, get_map
from protocols.planner import plan_reads
from protocols.reading import MEASURED_FIELDS, Quality, Reading
from protocols.registers import DataType, WordOrder, bytes_from_words, encode_value

GOOD = Reading("meter-7", 1_700_000_000_000, 1e6, 2e3, 3e4, 4e3, 230.5, 231.0, 229.5,
               5.0, 6.0, 7.0, 0.5, 3456.0, -120.0, 0.93, 50.02)
SS_BASE = 40069


def responses(name: str, reading: Reading = GOOD) -> list[list[int]]:
    m = get_map(name)
    return [list(b.words) for b in layout_blocks(m, encode_reading(m, reading))]


def decode(name: str, resp: list[list[int]]):
    m = get_map(name)
    return decode_reading(m, plan_reads(m), resp, meter_id="meter-7", ts_ms=GOOD.ts_ms)


def test_error_hierarchy_separates_fault():
    assert issubclass(IncompleteResponse, RemoteProtocolError)
    assert issubclass(MalformedResponse, RemoteProtocolError)
    assert issubclass(PlanError, LocalProtocolError)
    assert not issubclass(PlanError, RemoteProtocolError)


@pytest.mark.parametrize("name", MAP_NAMES)
def test_every_prefix_is_incomplete(name: str):
    plan = plan_reads(get_map(name))
    full = responses(name)
    for i, read in enumerate(plan):
        for n in range(read.count):
            cut = [*full[:i], full[i][:n], *full[i + 1 :]]
            with pytest.raises(IncompleteResponse) as info:
                decode(name, cut)
            assert info.value.meter_id == "meter-7"
            assert info.value.register == read.start + n
            assert (info.value.expected, info.value.got) == (read.count, n)


@pytest.mark.parametrize("name", MAP_NAMES)
def test_every_byte_prefix_is_incomplete(name: str):
    m = get_map(name)
    plan = plan_reads(m)
    payloads = [bytes_from_words(w) for w in responses(name)]
    for i in range(len(plan)):
        for n in range(len(payloads[i])):
            cut = [*payloads[:i], payloads[i][:n], *payloads[i + 1 :]]
            with pytest.raises(IncompleteResponse):
                decode_payloads(m, plan, cut, meter_id="m", ts_ms=0)


def _set(resp: list[list[int]], name: str, address: int, words: tuple[int, ...]) -> list[list[int]]:
    out = [list(r) for r in resp]
    for read, r in zip(plan_reads(get_map(name)), out, strict=True):
        for k, w in enumerate(words):
            if read.start <= address + k < read.stop:
                r[address + k - read.start] = w
    return out


MALFORMED = [
    pytest.param("sdm630", lambda r: [[*r[0][:3], 0x10000, *r[0][4:]], *r[1:]], "word_range", 3,
                 id="word-above-16-bit"),
    pytest.param("em24", lambda r: [[-1, *r[0][1:]], *r[1:]], "word_range", 0, id="negative-word"),
    pytest.param("sdm120", lambda r: [[*r[0], 0], *r[1:]], "too_long", 0, id="too-long"),
    pytest.param("sunspec203", lambda r: _set(r, "sunspec203", 40001, (0x6E54,)), "signature",
                 40001, id="not-sunspec-marker"),
    pytest.param("sunspec203", lambda r: _set(r, "sunspec203", SS_BASE, (201,)), "signature",
                 SS_BASE, id="wrong-model-id"),
    pytest.param("sunspec203", lambda r: _set(r, "sunspec203", SS_BASE + 1, (124,)), "signature",
                 SS_BASE + 1, id="wrong-model-length"),
]


@pytest.mark.parametrize(("name", "corrupt", "reason", "register"), MALFORMED)
def test_malformed_responses(name: str, corrupt, reason: str, register: int):
    with pytest.raises(MalformedResponse) as info:
        decode(name, corrupt(responses(name)))
    assert info.value.reason == reason
    assert info.value.register == register
    assert info.value.meter_id == "meter-7"


def test_odd_payload_is_malformed():
    m = get_map("sdm630")
    payloads = [bytes_from_words(w) for w in responses("sdm630")]
    payloads[0] += b"\x00"
    with pytest.raises(MalformedResponse, match="odd"):
        decode_payloads(m, plan_reads(m), payloads, meter_id="m", ts_ms=0)


def test_response_count_mismatch_is_our_error():
    with pytest.raises(PlanError):
        decode("sdm630", responses("sdm630")[:-1])


F32 = DataType.FLOAT32
NAN = encode_value(F32, WordOrder.ABCD, math.nan)
INF = encode_value(F32, WordOrder.ABCD, math.inf)
BAD_VALUES = [
    pytest.param("sdm630", 0x0000, NAN, {"v_l1": FailureReason.NOT_FINITE}, id="f32-nan-voltage"),
    pytest.param("sdm630", 0x0048, INF, {"import_wh": FailureReason.NOT_FINITE}, id="f32-inf-energy"),
    pytest.param("sdm120", 0x004A, encode_value(F32, WordOrder.ABCD, -1.0),
                 {"export_wh": FailureReason.OUT_OF_RANGE}, id="f32-negative-energy"),
    pytest.param("sdm630", 0x0000, encode_value(F32, WordOrder.CDAB, 230.0),
                 {"v_l1": FailureReason.SUBNORMAL}, id="f32-swapped-words"),
    pytest.param("sdm630", 0x0008, (0x0000, 0x0001), {"i_l2": FailureReason.SUBNORMAL},
                 id="f32-subnormal-current"),
    pytest.param("em24", 0x0033, (0,), {"freq_hz": FailureReason.OUT_OF_RANGE}, id="em24-0-hz"),
    pytest.param("em24", 0x0031, (1500,), {"pf": FailureReason.OUT_OF_RANGE}, id="em24-pf-1.5"),
    # 0x8000 is "not implemented" only in SunSpec; on an EM24 it is -3276.8 Hz, an error.
    pytest.param("em24", 0x0033, (0x8000,), {"freq_hz": FailureReason.OUT_OF_RANGE},
                 id="em24-0x8000-is-a-value"),
    pytest.param("em24", 0x000C, (0xFFFF, 0xFFFF), {"i_l1": FailureReason.OUT_OF_RANGE},
                 id="em24-negative-current"),
    pytest.param("sunspec203", SS_BASE + 15, (11,),
                 dict.fromkeys(("v_l1", "v_l2", "v_l3"), FailureReason.BAD_SCALE_FACTOR),
                 id="sunssf-out-of-range"),
    pytest.param("sunspec203", SS_BASE + 17, (0x8000,), {"freq_hz": FailureReason.BAD_SCALE_FACTOR},
                 id="sunssf-not-implemented"),
    pytest.param("sunspec203", SS_BASE + 16, (0x7FFF,), {"freq_hz": FailureReason.OUT_OF_RANGE},
                 id="sunspec-327-hz"),
]


@pytest.mark.parametrize(("name", "address", "words", "expected"), BAD_VALUES)
def test_implausible_values_become_decode_errors(name, address, words, expected):
    clean = decode(name, responses(name)).reading
    got = decode(name, _set(responses(name), name, address, words))
    assert got.reading.quality is Quality.DECODE_ERROR
    assert {f.field: f.reason for f in got.failures} == expected
    for failure in got.failures:
        assert getattr(got.reading, failure.field) is None  # never a made-up value
        assert failure.register == get_map(name).spec(failure.field).address  # type: ignore[union-attr]
    for field in MEASURED_FIELDS:  # the other fields are untouched
        if field not in expected:
            assert getattr(got.reading, field) == getattr(clean, field)


def test_sunspec_not_implemented_is_absent_not_an_error():
    # int16 0x8000 and acc32 0 are SunSpec's "not implemented": None, and the reading stays VALID.
    resp = _set(responses("sunspec203"), "sunspec203", SS_BASE + 8, (0x8000,))
    resp = _set(resp, "sunspec203", SS_BASE + 38, (0, 0))
    got = decode("sunspec203", resp)
    assert got.failures == ()
    assert got.reading.quality is Quality.VALID
    assert got.reading.v_l1 is None and got.reading.export_wh is None
    assert got.reading.v_l2 == 231.0


def _word_lists(name: str):
    plan = plan_reads(get_map(name))
    words = st.integers(0, 0xFFFF) | st.sampled_from([-1, 0x10000, 0x7FC0, 0x8000, 0xFFFF])
    return st.tuples(*(st.lists(words, min_size=r.count - 1, max_size=r.count + 1) for r in plan))


@pytest.mark.parametrize("name", MAP_NAMES)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_fuzz_words_decode_or_raise_protocol_error(name: str, data: st.DataObject):
    resp = [list(r) for r in data.draw(_word_lists(name))]
    try:
        got = decode(name, resp)
    except ProtocolError:
        return
    m = get_map(name)
    assert (got.reading.quality is Quality.DECODE_ERROR) == bool(got.failures)
    for spec in m.fields:
        value = getattr(got.reading, spec.field)
        assert value is None or spec.valid[0] <= value <= spec.valid[1]


@pytest.mark.parametrize("name", MAP_NAMES)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_fuzz_bytes_decode_or_raise_protocol_error(name: str, data: st.DataObject):
    m = get_map(name)
    plan = plan_reads(m)
    payloads = data.draw(st.lists(st.binary(max_size=2 * 106), min_size=len(plan), max_size=len(plan)))
    try:
        got = decode_payloads(m, plan, payloads, meter_id="m", ts_ms=0)
    except ProtocolError:
        return
    assert (got.reading.quality is Quality.DECODE_ERROR) == bool(got.failures)
