"""The CBOR subset envelopes use, with RFC 8949 §4.2.1 core deterministic encoding.

Why not `cbor2` here: its `canonical=True` sorts map keys length-first (RFC 7049), not bytewise
(RFC 8949 §4.2.1), and its decoder interprets dozens of semantic tags and accepts trailing
bytes. An envelope is evidence, so one meaning must have exactly one byte string:

- encode: shortest heads, definite lengths, map keys sorted by their encoded bytes, floats in
  the shortest of binary16/32/64 that keeps the value; NaN and infinities are refused.
- decode: the same subset only (uint, nint, bstr, tstr, array, map, false/true/null, finite
  floats, and one tag where the caller allows it) and only its deterministic form: a longer
  head than needed, an indefinite length, unsorted or duplicate keys, a float that fits a
  shorter width or trailing bytes are `MalformedEnvelope`. Running out of bytes anywhere is
  `IncompleteEnvelope`, so every strict prefix of a valid item is "incomplete".
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import TypeAlias

from protocols.envelope.errors import EnvelopeEncodeError, IncompleteEnvelope, MalformedEnvelope

MAX_DEPTH = 16  # envelopes nest 3 deep; a deeper input is junk, not a reason to recurse

# Recursive alias; a string because Python 3.11 has no `type` statement.
CborValue: TypeAlias = (
    "int | bytes | str | float | bool | list[CborValue] | dict[CborValue, CborValue] | Tagged | None"
)


@dataclass(frozen=True, slots=True)
class Tagged:
    tag: int
    value: CborValue


def _head(major: int, arg: int) -> bytes:
    if arg < 24:
        return bytes([major << 5 | arg])
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg < 1 << (8 * size):
            return bytes([major << 5 | ai]) + arg.to_bytes(size, "big")
    raise EnvelopeEncodeError(f"integer {arg} does not fit in 64 bits")


def _float(value: float) -> bytes:
    if not math.isfinite(value):
        raise EnvelopeEncodeError(f"non-finite float {value!r}: send null for a missing value")
    for code, fmt in ((0xF9, ">e"), (0xFA, ">f")):
        try:
            packed = struct.pack(fmt, value)
        except OverflowError:
            continue
        if struct.unpack(fmt, packed)[0] == value:  # exact: this width keeps the value
            return bytes([code]) + packed
    return b"\xfb" + struct.pack(">d", value)


def encode(value: CborValue) -> bytes:
    """Deterministic CBOR of `value`; raises `EnvelopeEncodeError` for anything outside the subset."""
    if value is None:
        return b"\xf6"
    if value is True or value is False:
        return b"\xf5" if value else b"\xf4"
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, bytes):
        return _head(2, len(value)) + value
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _head(3, len(raw)) + raw
    if isinstance(value, list):
        return _head(4, len(value)) + b"".join(encode(v) for v in value)
    if isinstance(value, dict):
        items = sorted((encode(k), encode(v)) for k, v in value.items())
        return _head(5, len(items)) + b"".join(k + v for k, v in items)
    if isinstance(value, Tagged):
        return _head(6, value.tag) + encode(value.value)
    raise EnvelopeEncodeError(f"cannot encode {type(value).__name__} in an envelope")


class _Reader:
    def __init__(self, data: bytes, allow_tag: int | None) -> None:
        self.data = data
        self.pos = 0
        self.allow_tag = allow_tag

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise IncompleteEnvelope(f"need {n} more byte(s) at offset {self.pos}", offset=len(self.data))
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def bad(self, what: str, reason: str = "non_deterministic") -> MalformedEnvelope:
        return MalformedEnvelope(f"{what} at offset {self.pos}", reason=reason)

    def argument(self, ai: int) -> int:
        if ai < 24:
            return ai
        if ai > 27:  # 28-30 reserved, 31 indefinite length: never deterministic
            raise self.bad(f"indefinite length or reserved additional info {ai}")
        size = 1 << (ai - 24)
        arg = int.from_bytes(self.take(size), "big")
        if arg < (24 if size == 1 else 1 << (4 * size)):  # 1 << 4*size == previous width's limit
            raise self.bad(f"integer head uses {size} bytes where fewer suffice")
        return arg

    def item(self, depth: int) -> CborValue:
        if depth > MAX_DEPTH:
            raise self.bad("nesting deeper than any envelope", "structure")
        initial = self.take(1)[0]
        major, ai = initial >> 5, initial & 0x1F
        if major == 7:
            return self.simple(ai)
        arg = self.argument(ai)
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major == 2:
            return self.take(arg)
        if major == 3:
            try:
                return self.take(arg).decode("utf-8")
            except UnicodeDecodeError:
                raise self.bad("text string is not UTF-8", "type") from None
        if major == 4:
            return [self.item(depth + 1) for _ in range(arg)]
        if major == 5:
            return self.map(arg, depth)
        if self.allow_tag is None or arg != self.allow_tag or depth != 0:
            raise self.bad(f"unexpected tag {arg}", "tag")
        return Tagged(arg, self.item(depth + 1))

    def map(self, count: int, depth: int) -> dict[CborValue, CborValue]:
        out: dict[CborValue, CborValue] = {}
        last = b""
        for _ in range(count):
            start = self.pos
            key = self.item(depth + 1)
            raw_key = self.data[start : self.pos]
            if raw_key <= last:  # bytewise order of encoded keys; equal means duplicate
                raise self.bad("map keys not in deterministic order (or duplicated)")
            if isinstance(key, bool) or not isinstance(key, int | str):  # true would alias 1
                raise self.bad("map key is not an integer or text", "type")
            last = raw_key
            out[key] = self.item(depth + 1)
        return out

    def simple(self, ai: int) -> CborValue:
        if ai in (20, 21, 22):
            return (False, True, None)[ai - 20]
        if ai not in (25, 26, 27):
            raise self.bad(f"unsupported simple value {ai}", "type")
        fmt = {25: ">e", 26: ">f", 27: ">d"}[ai]
        start = self.pos - 1
        value: float = struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
        if not math.isfinite(value):
            raise self.bad("non-finite float", "value")
        if _float(value) != self.data[start : self.pos]:
            raise self.bad("float not in its shortest form")
        return value


def decode(data: bytes, *, allow_tag: int | None = None) -> CborValue:
    """Decode exactly one deterministic item filling all of `data` (a top-level tag only if allowed)."""
    reader = _Reader(bytes(data), allow_tag)
    value = reader.item(0)
    if reader.pos != len(data):
        raise MalformedEnvelope(
            f"{len(data) - reader.pos} trailing byte(s) after the item", reason="trailing_bytes"
        )
    return value
