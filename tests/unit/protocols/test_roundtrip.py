"""encode(reading) -> words -> decode == reading, within each map's documented resolution."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.decode import decode_payloads, decode_reading, decode_registers
from protocols.encode import encode_reading, layout_blocks, server_blocks
from protocols.errors import EncodeError
from protocols.maps import MAP_NAMES, get_map
from protocols.planner import plan_reads
from protocols.reading import MEASURED_FIELDS, Quality, Reading
from protocols.registers import SENTINEL, bytes_from_words, decode_value
from tests.unit.protocols.strategies import readings, tolerance

MAPS = [pytest.param(get_map(n), id=n) for n in MAP_NAMES]


def assert_close(meter_map, original: Reading, decoded: Reading, regs: dict[int, int]) -> None:
    assert decoded.meter_id == original.meter_id and decoded.ts_ms == original.ts_ms
    assert decoded.quality is Quality.VALID
    for name in MEASURED_FIELDS:
        spec = meter_map.spec(name)
        want, got = getattr(original, name), getattr(decoded, name)
        if spec is None or want is None:
            assert got is None, name  # missing is missing: nothing made up
            continue
        tol = tolerance(spec, want, regs)
        raw = decode_value(spec.dtype, spec.order, [regs[a] for a in spec.addresses])
        if meter_map.sentinels and raw == SENTINEL.get(spec.dtype):
            # Only SunSpec acc32 can round onto its sentinel: a value under half a step.
            assert got is None and abs(want) <= tol, name
            continue
        assert got is not None, name
        assert abs(got - want) <= tol, (name, want, got, tol)


@pytest.mark.parametrize("meter_map", MAPS)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_roundtrip_through_planned_reads(meter_map, data: st.DataObject):
    reading = data.draw(readings(meter_map))
    regs = encode_reading(meter_map, reading)
    plan = plan_reads(meter_map)
    responses = [b.words for b in layout_blocks(meter_map, regs, plan)]
    decoded = decode_reading(meter_map, plan, responses, meter_id=reading.meter_id, ts_ms=reading.ts_ms)
    assert decoded.failures == ()
    assert_close(meter_map, reading, decoded.reading, regs)
    # The byte-level entry point agrees with the word-level one.
    payloads = [bytes_from_words(w) for w in responses]
    again = decode_payloads(meter_map, plan, payloads, meter_id=reading.meter_id, ts_ms=reading.ts_ms)
    assert again == decoded


@pytest.mark.parametrize("meter_map", MAPS)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_server_block_serves_what_the_client_reads(meter_map, data: st.DataObject):
    reading = data.draw(readings(meter_map))
    blocks = server_blocks(meter_map, reading)
    assert set(blocks) == set(meter_map.functions)
    block = blocks[meter_map.function]
    served = {block.start + i: w for i, w in enumerate(block.words)}
    assert all(0 <= w <= 0xFFFF for w in block.words)
    decoded = decode_registers(meter_map, served, meter_id=reading.meter_id, ts_ms=reading.ts_ms)
    assert_close(meter_map, reading, decoded.reading, served)


def test_em24_resolution_is_100_wh():
    em24 = get_map("em24")
    reading = Reading("m", 0, import_wh=123_449.0, export_wh=150.0, import_varh=0.0, export_varh=0.0,
                      v_l1=230, v_l2=230, v_l3=230, i_l1=1, i_l2=1, i_l3=1, p_w=0, q_var=0, pf=1,
                      freq_hz=50)
    got = decode_registers(em24, encode_reading(em24, reading), meter_id="m", ts_ms=0).reading
    assert got.import_wh == 123_400.0
    assert got.export_wh == 200.0  # 1.5 steps rounds to even: within half a step either way


def test_sunspec_coarsens_scale_factor_only_when_needed():
    ss = get_map("sunspec203")
    small = encode_reading(ss, Reading("m", 0, p_w=1234.0, freq_hz=50.0))
    big = encode_reading(ss, Reading("m", 0, p_w=1_234_567.0, freq_hz=50.0))
    w_sf = 40069 + 22
    assert small[w_sf] == 0  # preferred exponent: 1 W steps
    assert big[w_sf] == 2  # 1234567 W needs 100 W steps to fit int16
    got = decode_registers(ss, big, meter_id="m", ts_ms=0).reading
    assert got.p_w == 1_234_600.0
    assert got.v_l1 is None and got.import_wh is None  # absent stays absent


@pytest.mark.parametrize(
    ("name", "reading", "match"),
    [
        pytest.param("sdm630", Reading("m", 0), "no 'not available'", id="float32-none"),
        pytest.param(
            "em24",
            Reading("m", 0, 1e12, 0, 0, 0, 230, 230, 230, 1, 1, 1, None, 0, 0, 1, 50),
            "cannot hold",
            id="int32-overflow",
        ),
        pytest.param("sunspec203", Reading("m", 0, import_wh=-5.0), "no scale factor", id="acc32-negative"),
    ],
)
def test_encode_refuses_what_the_map_cannot_say(name: str, reading: Reading, match: str):
    with pytest.raises(EncodeError, match=match) as info:
        encode_reading(get_map(name), reading)
    assert info.value.meter_id == "m"
    assert info.value.register is not None


def test_float32_encoder_flushes_subnormals_to_zero():
    sdm = get_map("sdm120")
    tiny = Reading("m", 0, 1.0, 1.0, 1.0, 1.0, v_l1=230.0, i_l1=1e-40, p_w=0.0, q_var=0.0, pf=1.0,
                   freq_hz=50.0)
    regs = encode_reading(sdm, tiny)
    assert (regs[0x0006], regs[0x0007]) == (0, 0)
    assert decode_registers(sdm, regs, meter_id="m", ts_ms=0).reading.i_l1 == 0.0
