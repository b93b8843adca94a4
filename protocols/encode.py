"""Encoding readings into register words: what a simulated meter must serve.

Stable API (firmware_sim uses it):

    encode_reading(meter_map, reading) -> dict[int, int]       address -> 16-bit word
    server_blocks(meter_map, reading=None) -> dict[int, RegisterBlock]   per function code
    layout_blocks(meter_map, registers, plan=None) -> list[RegisterBlock]   per planned read

`encode_reading` writes every mapped field, the map's signature words and, for SunSpec, the
scale-factor registers. Fields the map lacks (EM24 `i_n`) are ignored. A `None` field is
written as the type's "not implemented" code where the format has one (SunSpec) and raises
`EncodeError` where it has none (float32/int32 meters always send a number). Float32 maps
pass NaN/inf through untouched so a simulator can inject them as faults.

Round-trip resolution (what decode(encode(x)) may differ by): integer registers round to
the nearest step of 10**(scale_exp + sf + si_exp) SI units, so the error is at most half a
step (EM24 kWh x0.1 -> 100 Wh steps, 50 Wh error). float32 keeps 24 significant bits: a
relative error of at most 2**-24 (about 60 Wh at 1 GWh), and values below the smallest
normal float32 (2**-126 in the meter's unit) are flushed to 0. For SunSpec the encoder picks, per
scale-factor register, the finest exponent (from the map's preferred one upwards) at which
every field sharing it fits; the step grows tenfold each time it must coarsen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from protocols.errors import EncodeError
from protocols.meter_map import FieldSpec, MeterMap
from protocols.planner import Read, plan_reads
from protocols.reading import Reading
from protocols.registers import FLOAT32_MIN_NORMAL, INT_RANGE, SENTINEL, DataType, encode_value

_F32_MAX = 3.4028234663852886e38
SF_RANGE = range(-10, 11)  # SunSpec: scale factors are -10..10


@dataclass(frozen=True, slots=True)
class RegisterBlock:
    """Contiguous registers starting at `start`, served or read with `function`."""

    function: int
    start: int
    words: tuple[int, ...]


def usable_range(dtype: DataType) -> tuple[int, int]:
    """Raw integers a value may take: the type's range minus its sentinel, if at an edge."""
    lo, hi = INT_RANGE[dtype]
    sentinel = SENTINEL.get(dtype)
    if sentinel == lo:
        lo += 1
    elif sentinel == hi:
        hi -= 1
    return lo, hi


def _raw(spec: FieldSpec, value: float | None, sf: int) -> int | float | None:
    """The raw register value for `value`, or None if it does not fit at this `sf`."""
    if value is None:
        return None
    if spec.dtype.is_float:
        raw_f = spec.from_si(value, sf)
        if abs(raw_f) < FLOAT32_MIN_NORMAL:
            raw_f = 0.0  # flush to zero, as meters do: the decoder rejects subnormals
        return raw_f if not math.isfinite(raw_f) or abs(raw_f) <= _F32_MAX else None
    if not math.isfinite(value) or (spec.dtype is DataType.ACC32 and value < 0):
        return None  # an accumulator cannot go negative, even by less than one step
    raw = round(spec.from_si(value, sf))
    lo, hi = usable_range(spec.dtype)
    if spec.dtype is DataType.ACC32:
        lo = 0  # a zero accumulator is the sentinel: documented, it reads back as None
    return raw if lo <= raw <= hi else None


def _pick_sf(meter_map: MeterMap, address: int, reading: Reading) -> int:
    specs = [f for f in meter_map.fields if f.scale_factor == address]
    for sf in range(meter_map.scale_factors[address], SF_RANGE.stop):
        if all(
            getattr(reading, f.field) is None or _raw(f, getattr(reading, f.field), sf) is not None
            for f in specs
        ):
            return sf
    names = ", ".join(f.field for f in specs)
    raise EncodeError(
        f"{meter_map.name}: no scale factor up to 10 fits {names}; check the values",
        meter_id=reading.meter_id,
        register=address,
    )


def encode_reading(meter_map: MeterMap, reading: Reading) -> dict[int, int]:
    """Register address -> word for every register `meter_map` decodes."""
    words: dict[int, int] = dict(meter_map.signature)
    sfs = {a: _pick_sf(meter_map, a, reading) for a in meter_map.scale_factors}
    words.update({address: sf & 0xFFFF for address, sf in sfs.items()})  # int16, two's complement
    for spec in meter_map.fields:
        value = getattr(reading, spec.field)
        sf = sfs.get(spec.scale_factor, 0) if spec.scale_factor is not None else 0
        raw = _raw(spec, value, sf)
        if raw is None and value is None and meter_map.sentinels and spec.dtype in SENTINEL:
            raw = SENTINEL[spec.dtype]
        if raw is None:
            what = "has no 'not available' code" if value is None else f"cannot hold {value!r}"
            raise EncodeError(
                f"{meter_map.name}: {spec.field} ({spec.dtype.value}) {what}",
                meter_id=reading.meter_id,
                register=spec.address,
            )
        words.update(zip(spec.addresses, encode_value(spec.dtype, spec.order, raw), strict=True))
    return words


def layout_blocks(
    meter_map: MeterMap, registers: Mapping[int, int], plan: Sequence[Read] | None = None
) -> list[RegisterBlock]:
    """The words each planned read would return, gaps filled with 0 (the decoder skips them)."""
    reads = plan_reads(meter_map) if plan is None else plan
    return [
        RegisterBlock(r.function, r.start, tuple(registers.get(a, 0) for a in r.addresses)) for r in reads
    ]


def server_blocks(meter_map: MeterMap, reading: Reading | None = None) -> dict[int, RegisterBlock]:
    """One contiguous block per function code the meter answers on, covering every register
    the map defines plus `static_words`; unmapped addresses inside it read 0. Without a
    reading the values are all 0 (SunSpec scale factors at their preferred exponents)."""
    words: dict[int, int] = {a: 0 for f in meter_map.fields for a in f.addresses}
    words.update({a: sf & 0xFFFF for a, sf in meter_map.scale_factors.items()})
    words.update(meter_map.static_words)
    words.update(meter_map.signature)
    if reading is not None:
        words.update(encode_reading(meter_map, reading))
    start, stop = min(words), max(words) + 1
    block = tuple(words.get(a, 0) for a in range(start, stop))
    return {fc: RegisterBlock(fc, start, block) for fc in meter_map.functions}
