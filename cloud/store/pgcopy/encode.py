"""Encode columns as PostgreSQL binary COPY data with numpy, no per-row Python.

A binary COPY row is: int16 field count, then per field an int32 byte length (-1 = NULL)
and the value in network byte order. Rows with the same text lengths and the same NULL
pattern have the same layout, so each such group is one numpy structured array; a file has
only a handful of groups. Row order across groups does not matter to COPY.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # signature, flags, header extension length
TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix µs: binary timestamps count from there
_FORMATS = {"float8": ">f8", "int8": ">i8", "int4": ">i4", "int2": ">i2", "timestamptz": ">i8"}


@dataclass(frozen=True, slots=True)
class Col:
    """One column. text: `values` are codes into `dictionary`; timestamptz: Unix µs."""

    name: str
    pgtype: str  # text, float8, int8, int4, int2, timestamptz
    values: npt.NDArray[np.generic]
    missing: npt.NDArray[np.bool_] | None = None
    dictionary: tuple[bytes, ...] = ()


def _layout_keys(cols: list[Col], n: int) -> npt.NDArray[np.int64]:
    key = np.zeros(n, np.int64)
    for c in cols:
        if c.pgtype == "text":
            lens = np.array([len(d) for d in c.dictionary], np.int64)
            key = key * (int(lens.max()) + 1) + lens[c.values]
        if c.missing is not None:
            key = key * 2 + c.missing
    return key


def encode(cols: list[Col], rows_per_piece: int = 250_000) -> Iterator[bytes]:
    """Yield the COPY stream (header, row pieces, trailer) for `cols`, all of one length."""
    n = len(cols[0].values)
    for c in cols:
        if len(c.values) != n or (c.missing is not None and len(c.missing) != n):
            raise ValueError(f"column {c.name} has {len(c.values)} values, expected {n}")
        if c.pgtype != "text" and c.pgtype not in _FORMATS:
            raise ValueError(f"column {c.name}: unsupported type {c.pgtype}; use one of "
                             f"text, {', '.join(_FORMATS)}")
    yield HEADER
    keys = _layout_keys(cols, n)
    uniq, inverse = np.unique(keys, return_inverse=True)
    for g in range(len(uniq)):
        rows = np.flatnonzero(inverse == g) if len(uniq) > 1 else np.arange(n)
        first = rows[0]
        fields: list[tuple[str, str]] = [("n", ">i2")]
        for i, c in enumerate(cols):
            fields.append((f"l{i}", ">i4"))
            if c.missing is not None and c.missing[first]:
                continue
            fmt = f"S{len(c.dictionary[c.values[first]])}" if c.pgtype == "text" else _FORMATS[c.pgtype]
            fields.append((f"v{i}", fmt))
        dtype = np.dtype(fields)
        for lo in range(0, len(rows), rows_per_piece):
            part = rows[lo:lo + rows_per_piece]
            rec = np.empty(len(part), dtype)
            rec["n"] = len(cols)
            for i, c in enumerate(cols):
                if f"v{i}" not in dtype.names:  # type: ignore[operator]
                    rec[f"l{i}"] = -1
                    continue
                rec[f"l{i}"] = dtype[f"v{i}"].itemsize
                if c.pgtype == "text":
                    rec[f"v{i}"] = np.array(c.dictionary, dtype=object)[c.values[part]] \
                        if len(c.dictionary) > 1 else c.dictionary[0]
                elif c.pgtype == "timestamptz":
                    rec[f"v{i}"] = c.values[part] - PG_EPOCH_US
                else:
                    rec[f"v{i}"] = c.values[part]
            yield rec.tobytes()
    yield TRAILER
