"""Word codecs: known vectors, round trips in every order, byte splitting."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.registers import (
    INT_RANGE,
    DataType,
    WordOrder,
    bytes_from_words,
    decode_value,
    encode_value,
    words_from_bytes,
)

# 230.0 as float32 is 0x43660000; -2 as int32 is 0xFFFFFFFE.
VECTORS = [
    pytest.param(DataType.FLOAT32, WordOrder.ABCD, 230.0, (0x4366, 0x0000), id="f32-abcd"),
    pytest.param(DataType.FLOAT32, WordOrder.CDAB, 230.0, (0x0000, 0x4366), id="f32-cdab"),
    pytest.param(DataType.FLOAT32, WordOrder.BADC, 230.0, (0x6643, 0x0000), id="f32-badc"),
    pytest.param(DataType.FLOAT32, WordOrder.DCBA, 230.0, (0x0000, 0x6643), id="f32-dcba"),
    pytest.param(DataType.INT32, WordOrder.CDAB, 2301, (2301, 0), id="i32-cdab"),
    pytest.param(DataType.INT32, WordOrder.CDAB, -2, (0xFFFE, 0xFFFF), id="i32-cdab-neg"),
    pytest.param(DataType.INT32, WordOrder.ABCD, 0x12345678, (0x1234, 0x5678), id="i32-abcd"),
    pytest.param(DataType.ACC32, WordOrder.ABCD, 70000, (1, 70000 - 65536), id="acc32"),
    pytest.param(DataType.INT16, WordOrder.CDAB, -1, (0xFFFF,), id="i16-ignores-order"),
    pytest.param(DataType.SUNSSF, WordOrder.ABCD, -3, (0xFFFD,), id="sunssf"),
]


@pytest.mark.parametrize(("dtype", "order", "value", "words"), VECTORS)
def test_known_vectors(dtype: DataType, order: WordOrder, value: float, words: tuple[int, ...]):
    assert encode_value(dtype, order, value) == words
    assert decode_value(dtype, order, words) == value


@given(
    dtype=st.sampled_from([d for d in DataType if d is not DataType.FLOAT32]),
    order=st.sampled_from(list(WordOrder)),
    data=st.data(),
)
def test_int_roundtrip(dtype: DataType, order: WordOrder, data: st.DataObject):
    lo, hi = INT_RANGE[dtype]
    value = data.draw(st.integers(lo, hi))
    words = encode_value(dtype, order, value)
    assert len(words) == dtype.words
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode_value(dtype, order, words) == value


@given(order=st.sampled_from(list(WordOrder)), value=st.floats(width=32, allow_nan=False))
def test_float32_roundtrip(order: WordOrder, value: float):
    assert decode_value(DataType.FLOAT32, order, encode_value(DataType.FLOAT32, order, value)) == value


def test_float32_nan_stays_nan():
    words = encode_value(DataType.FLOAT32, WordOrder.ABCD, math.nan)
    assert math.isnan(decode_value(DataType.FLOAT32, WordOrder.ABCD, words))


def test_orders_are_distinct_permutations():
    # A value with four different bytes must land differently under each order.
    packed = {o: encode_value(DataType.UINT32, o, 0x11223344) for o in WordOrder}
    assert len(set(packed.values())) == 4
    assert struct.pack(">HH", *packed[WordOrder.ABCD]) == bytes.fromhex("11223344")


@given(st.lists(st.integers(0, 0xFFFF), max_size=40))
def test_bytes_roundtrip(words: list[int]):
    assert words_from_bytes(bytes_from_words(words)) == tuple(words)
