"""A plain-Python reference for cloud/store/readings_import/scan.py (the analytics_naive.py idea).

It reads the grammar of docs/historical-import.md straight from regular expressions, `datetime`
and `float()`, slowly and a different way from the kernel's byte loops, for lines without
double quotes (the quote rules are checked by the kernel's own compiled-vs-Python comparison
and by the table tests). `reference_rows(data, roles)` gives per data line either its row
error, or per field what it must become: ("empty",), ("bad",), ("ok", value) or, for the
meter id, ("ok", id bytes).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from cloud.store.readings_import.columns import ROLE_FLOAT, ROLE_ID, ROLE_INT, ROLE_TS

# [0-9], never \d: the format is ASCII
_TS = re.compile(rb"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                 rb"(?:Z|([+-])([0-9]{2}):([0-9]{2}))")
_INT = re.compile(rb"\+?[0-9]{1,12}")
_FLOAT = re.compile(rb"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_EPOCH = datetime(1970, 1, 1)

Field = tuple[str] | tuple[str, object]


def timestamp_us(text: bytes) -> int | None:
    m = _TS.fullmatch(text)
    if m is None:
        return None
    try:
        naive = datetime(*(int(g) for g in m.groups()[:6]))
    except ValueError:  # 2023-02-29, month 13, year 0000, 24:00:00 ...
        return None
    offset_s = 0
    if m[7] is not None:
        oh, om = int(m[8]), int(m[9])
        if oh > 23 or om > 59:
            return None
        offset_s = (oh * 60 + om) * 60 * (1 if m[7] == b"+" else -1)
    return (naive - _EPOCH) // timedelta(microseconds=1) - offset_s * 1_000_000


def field(role: int, text: bytes) -> Field:
    text = text.strip(b" ")
    if not text:
        return ("empty",)
    if role == ROLE_ID:
        return ("ok", text)
    if role == ROLE_TS:
        us = timestamp_us(text)
        return ("bad",) if us is None else ("ok", us)
    if role == ROLE_INT:
        return ("ok", int(text)) if _INT.fullmatch(text) else ("bad",)
    assert role == ROLE_FLOAT
    return ("ok", float(text)) if _FLOAT.fullmatch(text) else ("bad",)


def reference_rows(data: bytes, roles: list[int]) -> list[str | list[Field] | None]:
    """Per data line: "blank", "fields" (wrong count), None (has a double quote: not
    modelled here), or the list of its fields."""
    lines = data.split(b"\n")
    if lines[-1] == b"":  # a final newline ends the last line, it does not start one
        lines.pop()
    out: list[str | list[Field] | None] = []
    for line in lines:
        line = line.removesuffix(b"\r")
        if b'"' in line:
            out.append(None)
        elif line == b"":
            out.append("blank")
        elif len(parts := line.split(b",")) != len(roles):
            out.append("fields")
        else:
            out.append([field(r, p) for r, p in zip(roles, parts, strict=True)])
    return out
