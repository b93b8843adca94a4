"""The fixed-width binary COPY decoder: round trip against the encoder, any chunking, every
prefix is incomplete, and a row that breaks the layout (a NULL) is an error, not garbage."""

from __future__ import annotations

import numpy as np
import pytest

from cloud.store.pgcopy.decode import CopyFormatError, FixedRowDecoder
from cloud.store.pgcopy.encode import Col, encode

FIELDS = [("idx", "int4"), ("ts", "timestamptz"), ("x", "float8"), ("q", "int2")]


def _stream(n: int, missing: np.ndarray | None = None) -> bytes:
    rng = np.random.default_rng(n)
    cols = [Col("idx", "int4", np.arange(n, dtype=np.int32)),
            Col("ts", "timestamptz", 1_767_225_600_000_000 + np.arange(n, dtype=np.int64) * 900_000_000),
            Col("x", "float8", rng.normal(size=n), missing=missing),
            Col("q", "int2", (np.arange(n) % 5).astype(np.int16))]
    return b"".join(encode(cols))


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_round_trip_any_chunking(chunk: int) -> None:
    data = _stream(50)
    dec = FixedRowDecoder(FIELDS, batch_rows=8)
    rec = np.concatenate(list(dec.feed(data[i:i + chunk] for i in range(0, len(data), chunk))))
    np.testing.assert_array_equal(rec["idx"], np.arange(50))
    assert rec["ts"][1] - rec["ts"][0] == 900_000_000  # µs since 2000-01-01, as the server sends
    np.testing.assert_array_equal(rec["x"], np.random.default_rng(50).normal(size=50))
    np.testing.assert_array_equal(rec["q"], np.arange(50) % 5)
    assert dec.rows == 50


def test_empty_stream() -> None:
    assert list(FixedRowDecoder(FIELDS).feed([_stream(0)])) == []


def test_every_prefix_is_incomplete() -> None:
    data = _stream(3)
    for i in range(len(data)):
        with pytest.raises(CopyFormatError):
            list(FixedRowDecoder(FIELDS).feed([data[:i]]))


@pytest.mark.parametrize(("name", "data"), [
    ("null_field", _stream(4, missing=np.array([False, True, False, False]))),
    ("bad_signature", b"PGCOPX\n\xff\r\n\x00" + _stream(2)[11:]),
    ("junk_after_trailer", _stream(2) + b"\x00"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_malformed(name: str, data: bytes) -> None:
    with pytest.raises(CopyFormatError):
        list(FixedRowDecoder(FIELDS).feed([data]))
