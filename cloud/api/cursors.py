"""Opaque cursors for keyset pagination.

A cursor is base64url(JSON {"k": endpoint kind, "v": [the sort key of the last row sent]}).
Keyset, not OFFSET: page N costs the same as page 1, and rows inserted meanwhile do not shift
pages. The kind tag stops a cursor of one listing from being replayed against another, which
would otherwise seek on the wrong column. A cursor the client mangled is a 400, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from cloud.api.problems import ProblemError

_MAX_LEN = 2048


def encode(kind: str, values: list[Any]) -> str:
    vals = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    raw = json.dumps({"k": kind, "v": vals}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(kind: str, cursor: str | None, types: tuple[type, ...]) -> list[Any] | None:
    """The sort key in `cursor`, checked to be `len(types)` values of those types."""
    if cursor is None:
        return None
    bad = ProblemError(400, "the cursor is not one this listing issued; start again without it "
                  "(cursors come from next_cursor of a previous page)", kind="bad-cursor")
    if len(cursor) > _MAX_LEN:
        raise bad
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(doc, dict) or doc.get("k") != kind:
        raise bad
    values = doc.get("v")
    if not isinstance(values, list) or len(values) != len(types):
        raise bad
    out: list[Any] = []
    for v, t in zip(values, types, strict=True):
        if t is datetime:  # sent as ISO 8601 text; parsed here so a bad one is a 400, not SQL's
            try:
                v = datetime.fromisoformat(v) if isinstance(v, str) else None
            except ValueError:
                v = None
            if v is None or v.tzinfo is None:
                raise bad
        # bool is an int subclass: be exact, a cursor never holds one
        elif isinstance(v, bool) or not isinstance(v, t):
            raise bad
        out.append(v)
    return out
