"""Hypothesis strategies and tolerance helpers shared by the protocol tests."""

from __future__ import annotations

import math

from hypothesis import strategies as st

from protocols.encode import encode_reading
from protocols.meter_map import FieldSpec, MeterMap
from protocols.reading import Reading
from protocols.registers import DataType, WordOrder, decode_value


def _value(spec: FieldSpec) -> st.SearchStrategy[float]:
    lo, hi = spec.valid
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def readings(draw: st.DrawFn, meter_map: MeterMap) -> Reading:
    """A physically valid reading for `meter_map`; SunSpec fields may also be absent."""
    values: dict[str, float | None] = {}
    for spec in meter_map.fields:
        value = _value(spec)
        values[spec.field] = draw(st.none() | value) if meter_map.sentinels else draw(value)
    return Reading(draw(st.text(min_size=1, max_size=8)), draw(st.integers(0, 2**42)), **values)


def tolerance(spec: FieldSpec, original: float, registers: dict[int, int]) -> float:
    """The documented round-trip bound for one field (encode.py docstring)."""
    if spec.dtype is DataType.FLOAT32:
        # Half an ulp of float32 is 2**-24 relative; below 2**-126 the encoder flushes to 0.
        return abs(original) * 2**-24 * (1 + 1e-9) + spec.to_si(2.0**-126)
    sf = 0
    if spec.scale_factor is not None:
        sf = int(decode_value(DataType.SUNSSF, WordOrder.ABCD, [registers[spec.scale_factor]]))
    step = spec.to_si(1, sf)
    return step / 2 * (1 + 1e-9) + math.ulp(abs(original)) * 4


def encoded(meter_map: MeterMap, reading: Reading) -> dict[int, int]:
    return encode_reading(meter_map, reading)
