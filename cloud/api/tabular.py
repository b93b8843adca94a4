"""One listing, two shapes: a JSON page `{"items": [...], "next_cursor": ...}` or CSV.

CSV is chosen by `?format=csv` or by an Accept header that asks for text/csv and not for
JSON. Its columns are the item model's fields in order (so the header names carry the units,
like the JSON keys); the next page's cursor travels in `X-Next-Cursor` and a `Link: rel=next`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from enum import Enum
from typing import Any, Generic, Literal, TypeVar

from fastapi import Request, Response
from pydantic import BaseModel, Field

T = TypeVar("T", bound=BaseModel)

Format = Literal["json", "csv"]
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at the end")


def wants_csv(request: Request, fmt: Format | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict | list):
        return _safe_text(json.dumps(v, separators=(",", ":"), default=str))
    if isinstance(v, str):
        return _safe_text(v)
    return v


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _safe_text(s: str) -> str:
    """Text a spreadsheet would run as a formula (`=HYPERLINK(...)`, `+1+cmd|...`) gets a
    leading apostrophe, as OWASP advises for CSV injection; numbers are not text here, so
    negative values stay numbers."""
    return "'" + s if s.startswith(_FORMULA_START) else s


def csv_response(request: Request, model: type[BaseModel], items: Sequence[BaseModel],
                 next_cursor: str | None) -> Response:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = list(model.model_fields)
    w.writerow(names)
    for item in items:
        w.writerow([_cell(getattr(item, n)) for n in names])
    headers: dict[str, str] = {}
    if next_cursor is not None:
        headers["X-Next-Cursor"] = next_cursor
        headers["Link"] = f'<{request.url.include_query_params(cursor=next_cursor)}>; rel="next"'
    return Response(buf.getvalue(), media_type=CSV_MEDIA_TYPE, headers=headers)


def page_or_csv(request: Request, fmt: Format | None, model: type[T], items: list[T],
                next_cursor: str | None) -> Page[T] | Response:
    if wants_csv(request, fmt):
        return csv_response(request, model, items, next_cursor)
    return Page[model](items=items, next_cursor=next_cursor)  # type: ignore[valid-type]


# For route decorators: a listing also answers text/csv.
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}},
          "description": "a JSON page, or CSV with `?format=csv` / `Accept: text/csv`"},
}
