"""Decoding register words into a `Reading`.

Two layers of failure, kept apart on purpose:
- The *response* is unusable -> an exception (`protocols.errors`): too few words or bytes
  is `IncompleteResponse` (retry), words outside 0..0xFFFF, too many words or a wrong
  SunSpec signature is `MalformedResponse` (check the map). No Reading comes out.
- A *value* decodes but is not physical (NaN/inf, a float32 subnormal, outside the map's `valid` range, a bad
  SunSpec scale factor) -> that field is None, the Reading's quality is DECODE_ERROR and
  `Decoded.failures` says which field failed and why. Nothing is clipped or made up.
A SunSpec "not implemented" code is neither: the field is simply None.

    decode_reading(meter_map, plan, responses, *, meter_id, ts_ms) -> Decoded
    decode_payloads(meter_map, plan, payloads, *, meter_id, ts_ms) -> Decoded   (raw bytes)
    decode_registers(meter_map, registers, *, meter_id, ts_ms) -> Decoded      (addr -> word)
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from protocols.errors import IncompleteResponse, MalformedResponse, PlanError
from protocols.meter_map import FieldSpec, MeterMap
from protocols.planner import Read
from protocols.reading import Quality, Reading
from protocols.registers import (
    FLOAT32_MIN_NORMAL,
    SENTINEL,
    DataType,
    WordOrder,
    decode_value,
    words_from_bytes,
)


class FailureReason(enum.Enum):
    NOT_FINITE = "not_finite"  # float32 NaN or infinity
    SUBNORMAL = "subnormal"  # float32 below 2**-126: the mark of swapped words, not a reading
    OUT_OF_RANGE = "out_of_range"  # outside the field's physical range
    BAD_SCALE_FACTOR = "bad_scale_factor"  # sunssf missing or outside -10..10


@dataclass(frozen=True, slots=True)
class FieldFailure:
    field: str
    register: int
    reason: FailureReason
    raw: tuple[int, ...]  # the words as received
    value: float | None  # the SI value when it decoded but was implausible


@dataclass(frozen=True, slots=True)
class Decoded:
    reading: Reading
    failures: tuple[FieldFailure, ...] = ()


def _word(registers: Mapping[int, int], address: int, meter_id: str) -> int:
    try:
        w = registers[address]
    except KeyError:
        raise IncompleteResponse(
            "register missing from the responses",
            expected=1,
            got=0,
            meter_id=meter_id,
            register=address,
        ) from None
    if not isinstance(w, int) or not 0 <= w <= 0xFFFF:
        raise MalformedResponse(
            f"word {w!r} is not a 16-bit register",
            reason="word_range",
            meter_id=meter_id,
            register=address,
        )
    return w


def check_reply(read: Read, function_code: int, words: Sequence[int], *,
                meter_id: str | None = None) -> None:
    """Refuse a reply that does not answer `read`: another function code, or not exactly
    `read.count` words. pymodbus matches replies to requests by transaction id only, so a
    confused gateway's answer to a different request reaches us looking valid."""
    if function_code != read.function:
        raise MalformedResponse(
            f"reply has function code {function_code} for a function-{read.function} read; "
            "the gateway or meter answered another request",
            reason="function_code",
            meter_id=meter_id,
            register=read.start,
        )
    if len(words) < read.count:
        raise IncompleteResponse(
            "short response", expected=read.count, got=len(words), meter_id=meter_id,
            register=read.start + len(words))
    if len(words) > read.count:
        raise MalformedResponse(
            f"{len(words)} words for a read of {read.count}", reason="too_long",
            meter_id=meter_id, register=read.start)


def registers_from_responses(
    plan: Sequence[Read], responses: Sequence[Sequence[int]], *, meter_id: str
) -> dict[int, int]:
    """Address -> word from the responses to `plan`, checking each one's length."""
    if len(responses) != len(plan):
        raise PlanError(f"{len(responses)} responses for {len(plan)} reads", meter_id=meter_id)
    registers: dict[int, int] = {}
    for read, words in zip(plan, responses, strict=True):
        check_reply(read, read.function, words, meter_id=meter_id)
        registers.update(zip(read.addresses, words, strict=True))
    for address in registers:
        _word(registers, address, meter_id)
    return registers


def _sf(meter_map: MeterMap, spec: FieldSpec, regs: Mapping[int, int], mid: str) -> int | None:
    if spec.scale_factor is None:
        return 0
    sf = decode_value(DataType.SUNSSF, WordOrder.ABCD, [_word(regs, spec.scale_factor, mid)])
    return int(sf) if -10 <= sf <= 10 else None


def _field(
    meter_map: MeterMap, spec: FieldSpec, regs: Mapping[int, int], mid: str
) -> tuple[float | None, FieldFailure | None]:
    raw_words = tuple(_word(regs, a, mid) for a in spec.addresses)
    raw = decode_value(spec.dtype, spec.order, raw_words)
    if meter_map.sentinels and raw == SENTINEL.get(spec.dtype):
        return None, None

    def fail(reason: FailureReason, value: float | None = None) -> tuple[None, FieldFailure]:
        return None, FieldFailure(spec.field, spec.address, reason, raw_words, value)

    if not math.isfinite(raw):
        return fail(FailureReason.NOT_FINITE)
    # Meters flush to zero; a subnormal float32 (230 V with its words swapped reads 2.4e-41)
    # would otherwise pass every range that includes 0.
    if spec.dtype.is_float and raw != 0 and abs(raw) < FLOAT32_MIN_NORMAL:
        return fail(FailureReason.SUBNORMAL)
    sf = _sf(meter_map, spec, regs, mid)
    if sf is None:
        return fail(FailureReason.BAD_SCALE_FACTOR)
    value = spec.to_si(raw, sf)
    lo, hi = spec.valid
    if not lo <= value <= hi:
        return fail(FailureReason.OUT_OF_RANGE, value)
    return value, None


def decode_registers(
    meter_map: MeterMap, registers: Mapping[int, int], *, meter_id: str, ts_ms: int, status: int = 0
) -> Decoded:
    """Decode from an address -> word mapping (e.g. `encode_reading`'s output)."""
    for address, expected in meter_map.signature.items():
        got = _word(registers, address, meter_id)
        if got != expected:
            raise MalformedResponse(
                f"{meter_map.name} signature: expected 0x{expected:04X}, got 0x{got:04X}; "
                "wrong map or wrong base address",
                reason="signature",
                meter_id=meter_id,
                register=address,
            )
    values: dict[str, float | None] = {}
    failures: list[FieldFailure] = []
    for spec in meter_map.fields:
        value, failure = _field(meter_map, spec, registers, meter_id)
        values[spec.field] = value
        if failure is not None:
            failures.append(failure)
    quality = Quality.DECODE_ERROR if failures else Quality.VALID
    reading = Reading(meter_id, ts_ms, **values, status=status, quality=quality)
    return Decoded(reading, tuple(failures))


def decode_reading(
    meter_map: MeterMap,
    plan: Sequence[Read],
    responses: Sequence[Sequence[int]],
    *,
    meter_id: str,
    ts_ms: int,
    status: int = 0,
) -> Decoded:
    """Decode the word lists that answered `plan` (one list per read, in plan order)."""
    regs = registers_from_responses(plan, responses, meter_id=meter_id)
    return decode_registers(meter_map, regs, meter_id=meter_id, ts_ms=ts_ms, status=status)


def decode_payloads(
    meter_map: MeterMap,
    plan: Sequence[Read],
    payloads: Sequence[bytes],
    *,
    meter_id: str,
    ts_ms: int,
    status: int = 0,
) -> Decoded:
    """Like `decode_reading`, from the raw register bytes of each response (2 per word)."""
    responses: list[tuple[int, ...]] = []
    for read, payload in zip(plan, payloads, strict=False):
        if len(payload) < 2 * read.count:
            raise IncompleteResponse(
                "short payload",
                expected=2 * read.count,
                got=len(payload),
                meter_id=meter_id,
                register=read.start + len(payload) // 2,
            )
        if len(payload) % 2:
            raise MalformedResponse(
                "odd byte count", reason="odd_length", meter_id=meter_id, register=read.start
            )
        responses.append(words_from_bytes(payload))
    if len(payloads) != len(plan):
        raise PlanError(f"{len(payloads)} payloads for {len(plan)} reads", meter_id=meter_id)
    return decode_reading(meter_map, plan, responses, meter_id=meter_id, ts_ms=ts_ms, status=status)
