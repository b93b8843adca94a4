"""Decode a PostgreSQL binary COPY stream of fixed-width rows into NumPy records, no per-row Python.

A binary COPY row is an int16 field count, then per field an int32 length (-1 = NULL) and the
value in network byte order. When no field can be NULL and every type has a fixed width (the
query `coalesce`s floats to 'NaN', which float8 can carry), every row has the same layout, so a
buffer of rows *is* a NumPy structured array: `np.frombuffer` reads millions of rows at memory
speed. Rows arrive in chunks that do not respect row boundaries; `FixedRowDecoder` keeps the
partial row for the next chunk. (`encode.py` beside it is the encoding counterpart.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER_LEN = len(SIGNATURE) + 8  # + int32 flags + int32 header-extension length (0)
TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000  # binary timestamptz counts µs from 2000-01-01 UTC
_WIDTH = {"int2": ">i2", "int4": ">i4", "int8": ">i8", "float8": ">f8", "timestamptz": ">i8"}


class CopyFormatError(ValueError):
    """The server sent a COPY stream that does not have the layout we asked for (a NULL where
    the query promised none, a wrong type): a bug in the query, not in the data."""


def row_dtype(fields: list[tuple[str, str]]) -> np.dtype:
    """Structured dtype of one row for `(name, pgtype)` fields, in query order."""
    parts: list[tuple[str, str]] = [("_n", ">i2")]
    for name, pgtype in fields:
        parts += [(f"_len_{name}", ">i4"), (name, _WIDTH[pgtype])]
    return np.dtype(parts)


class FixedRowDecoder:
    """Feed chunks in, get structured arrays of whole rows out (`batch_rows` at a time)."""

    def __init__(self, fields: list[tuple[str, str]], batch_rows: int = 200_000) -> None:
        self.dtype = row_dtype(fields)
        self.n_fields = len(fields)
        self.lengths = [(f"_len_{name}", self.dtype[name].itemsize) for name, _ in fields]
        self.batch_bytes = batch_rows * self.dtype.itemsize
        self._buf = bytearray()
        self._header_seen = False
        self.rows = 0

    def feed(self, chunks: Iterable[bytes | bytearray | memoryview]) -> Iterator[np.ndarray]:
        for chunk in chunks:
            self._buf += chunk
            if len(self._buf) >= self.batch_bytes + HEADER_LEN:
                yield from self._drain(final=False)
        yield from self._drain(final=True)

    def _drain(self, *, final: bool) -> Iterator[np.ndarray]:
        if not self._header_seen:
            if len(self._buf) < HEADER_LEN:
                if final:
                    raise CopyFormatError("COPY stream ended inside its header")
                return
            if bytes(self._buf[: len(SIGNATURE)]) != SIGNATURE:
                raise CopyFormatError("not a binary COPY stream (bad signature)")
            ext = int.from_bytes(self._buf[len(SIGNATURE) + 4 : HEADER_LEN], "big")
            del self._buf[: HEADER_LEN + ext]
            self._header_seen = True
        size = self.dtype.itemsize
        n = len(self._buf) // size
        if final and len(self._buf) % size != len(TRAILER):
            raise CopyFormatError(f"COPY stream has {len(self._buf) % size} stray bytes at its end: "
                                  "a row did not have the fixed layout (a NULL the query should "
                                  "have coalesced?)")
        if n:
            rec = np.frombuffer(bytes(self._buf[: n * size]), self.dtype)
            del self._buf[: n * size]
            self._check(rec)
            self.rows += n
            yield rec
        if final and bytes(self._buf) != TRAILER:
            raise CopyFormatError("COPY stream does not end with its trailer")

    def _check(self, rec: np.ndarray) -> None:
        # A NULL (length -1) or a different type shifts every following byte: catch it here
        # instead of returning garbage numbers.
        if not (rec["_n"] == self.n_fields).all():
            raise CopyFormatError(f"rows do not all have {self.n_fields} fields")
        for name, width in self.lengths:
            if not (rec[name] == width).all():
                raise CopyFormatError(f"field {name[5:]} is not always {width} bytes (NULL or wrong type)")
