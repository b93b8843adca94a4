"""Register data types and word codecs: Modbus words <-> numbers, nothing else.

A Modbus register is one 16-bit word, sent high byte first. 32-bit values span two registers
and vendors disagree on the order of the four bytes. We name an order by where the bytes of the
big-endian value A B C D (A most significant) land, register by register:

    ABCD  high word first, bytes as sent       (Eastron, SunSpec)
    CDAB  low word first ("word swap")         (Carlo Gavazzi EM24)
    BADC  high word first, bytes swapped in each word
    DCBA  fully little-endian

16-bit types ignore the word order. SunSpec reserves one "not implemented" code per type
(`SENTINEL`); other vendors have none, so a map's absent field is simply not in the map.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence


class DataType(enum.Enum):
    FLOAT32 = "float32"
    INT32 = "int32"
    UINT32 = "uint32"
    ACC32 = "acc32"  # SunSpec accumulator: uint32 that only grows, 0 = not implemented
    INT16 = "int16"
    UINT16 = "uint16"
    SUNSSF = "sunssf"  # SunSpec scale factor: int16 power of ten, -10..10

    @property
    def words(self) -> int:
        return 1 if self in _ONE_WORD else 2

    @property
    def is_float(self) -> bool:
        return self is DataType.FLOAT32


class WordOrder(enum.Enum):
    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


_ONE_WORD = frozenset({DataType.INT16, DataType.UINT16, DataType.SUNSSF})

# struct codes for the value once its bytes are back in big-endian order.
_STRUCT = {
    DataType.FLOAT32: ">f",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.ACC32: ">I",
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.SUNSSF: ">h",
}

# The raw integer each SunSpec type reserves for "not implemented" (SunSpec IM spec, sec. 5).
SENTINEL: dict[DataType, int] = {
    DataType.INT16: -0x8000,
    DataType.UINT16: 0xFFFF,
    DataType.ACC32: 0,
    DataType.SUNSSF: -0x8000,
}

# Smallest normal float32. Meters never send subnormals; the encoder flushes them to zero and
# the decoder rejects them (they are what a float read in the wrong word order looks like).
FLOAT32_MIN_NORMAL = 2.0**-126

# Representable raw integers per type (inclusive), before any sentinel is excluded.
INT_RANGE: dict[DataType, tuple[int, int]] = {
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.ACC32: (0, 2**32 - 1),
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.SUNSSF: (-(2**15), 2**15 - 1),
}

# Permutation from big-endian bytes ABCD to the bytes on the wire, per order.
_PERM: dict[WordOrder, tuple[int, int, int, int]] = {
    WordOrder.ABCD: (0, 1, 2, 3),
    WordOrder.CDAB: (2, 3, 0, 1),
    WordOrder.BADC: (1, 0, 3, 2),
    WordOrder.DCBA: (3, 2, 1, 0),
}


def _wire_bytes(words: Sequence[int]) -> bytes:
    return b"".join(w.to_bytes(2, "big") for w in words)


def decode_value(dtype: DataType, order: WordOrder, words: Sequence[int]) -> int | float:
    """The raw number (no scaling) held in `words`; ints stay ints, float32 becomes a float.

    The caller guarantees `len(words) == dtype.words` and 0 <= word <= 0xFFFF.
    """
    wire = _wire_bytes(words)
    if dtype.words == 2:
        perm = _PERM[order]
        # wire[i] holds value byte perm[i]; invert the permutation back to ABCD.
        be = bytearray(4)
        for i, p in enumerate(perm):
            be[p] = wire[i]
        wire = bytes(be)
    value: int | float = struct.unpack(_STRUCT[dtype], wire)[0]
    return value


def encode_value(dtype: DataType, order: WordOrder, raw: int | float) -> tuple[int, ...]:
    """The words that carry `raw` (already scaled to the register's integer or float32).

    Raises `struct.error`/`OverflowError` on out-of-range input; `encode.py` checks first.
    """
    be = struct.pack(_STRUCT[dtype], raw)
    if dtype.words == 2:
        perm = _PERM[order]
        be = bytes(be[p] for p in perm)
    return tuple(int.from_bytes(be[i : i + 2], "big") for i in range(0, len(be), 2))


def words_from_bytes(payload: bytes) -> tuple[int, ...]:
    """Split a big-endian register payload (as in a Modbus PDU) into words; even length only."""
    return tuple(int.from_bytes(payload[i : i + 2], "big") for i in range(0, len(payload) - 1, 2))


def bytes_from_words(words: Sequence[int]) -> bytes:
    return _wire_bytes(words)
