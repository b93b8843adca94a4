"""Query parameters several routes share, validated once: page size and cursor, time ranges,
output format. Limits come from `Settings`, so they are checked here (422 problem with the
limit in the message) rather than in the parameter declarations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from pydantic import BeforeValidator, WithJsonSchema

from cloud.api.deps import SettingsDep
from cloud.api.problems import ProblemError
from cloud.api.tabular import Format


@dataclass(frozen=True, slots=True)
class PageParams:
    limit: int
    cursor: str | None


def page_params(
    settings: SettingsDep,
    limit: Annotated[int | None, Query(ge=1, description="rows per page (default and maximum "
                                                          "in the server's settings: 100 / 1000)")] = None,
    cursor: Annotated[str | None, Query(max_length=2048,
                                        description="next_cursor of the previous page")] = None,
) -> PageParams:
    if limit is None:
        limit = settings.default_page_size
    if limit > settings.max_page_size:
        raise ProblemError(422, f"limit {limit} is above the maximum page size "
                      f"{settings.max_page_size}; page with the cursor instead", kind="limit-too-large")
    return PageParams(limit, cursor)


PageDep = Annotated[PageParams, Depends(page_params)]
FormatParam = Annotated[Format | None, Query(alias="format", description="json (default) or csv")]


def utc(t: datetime) -> datetime:
    """Naive times are taken as UTC (the API speaks UTC throughout)."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def check_range(start: datetime, end: datetime, cap: timedelta, what: str) -> tuple[datetime, datetime]:
    try:
        start, end = utc(start), utc(end)
    except OverflowError:  # a valid offset that moves the time past year 1 or 9999
        raise ProblemError(422, "start/end are outside the supported years 1-9999",
                      kind="bad-time-range") from None
    if end <= start:
        raise ProblemError(422, f"end ({end.isoformat()}) must be after start ({start.isoformat()})",
                      kind="bad-time-range")
    if end - start > cap:
        raise ProblemError(422, f"the range is {end - start}; {what} allows at most {cap}: split it "
                      "into several requests or use a coarser resolution", kind="range-too-long")
    return start, end


# Times in query strings: ISO 8601 text only (pydantic alone would also take 1700000000 as a
# Unix time, which the schema does not say), a date alone meaning its midnight, no offset UTC.
_ISO = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
        r"(Z|[+-][0-9]{2}:[0-9]{2})?)?$")


def _parse_time(v: Any) -> datetime:
    if isinstance(v, datetime):
        return v
    if not isinstance(v, str) or re.fullmatch(_ISO, v) is None:
        raise ValueError("use ISO 8601, e.g. 2026-01-31T00:00:00Z or 2026-01-31")
    try:
        return datetime.fromisoformat(v)
    except ValueError as exc:
        raise ValueError(f"not a valid date/time ({exc})") from None


Time = Annotated[datetime, BeforeValidator(_parse_time), WithJsonSchema(
    {"type": "string", "pattern": _ISO, "description": "ISO 8601 date or date-time; no offset means UTC"})]


def reject_unknown_query(request: Request) -> None:
    """A misspelt parameter (`?regoin_id=R1`) must not silently widen a query: 422 instead.
    The route's parameters come from the published OpenAPI document, computed once."""
    route = request.scope.get("route")
    if route is None:
        return
    known = _query_names(request.app, str(getattr(route, "path", "")), request.method)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise ProblemError(422, f"unknown query parameter(s) {', '.join(repr(u) for u in unknown)}; this "
                           f"endpoint takes {', '.join(sorted(known)) or 'none'}", kind="unknown-parameter")


def _query_names(app: Any, path: str, method: str) -> frozenset[str]:
    cache: dict[tuple[str, str], frozenset[str]] = app.state.__dict__.setdefault("_query_names", {})
    key = (path, method)
    if key not in cache:
        op = app.openapi().get("paths", {}).get(path, {}).get(method.lower(), {})
        cache[key] = frozenset(p["name"] for p in op.get("parameters", []) if p.get("in") == "query")
    return cache[key]
