"""Topology import (admin): the grid file (docs/grid-file.md) as the request body, loaded by
`cloud.store.topology.import_topology`, the same code as `wattrail topology import`: the JSON
document (`Content-Type: application/json`) or the MDM CSV (`text/csv`, one row per customer
meter, `?currency=` for its tariffs).

The importer takes a file and a sync connection, so the body's bytes are written as they came
to a temporary file and imported in a worker thread with a connection of its own: the same
checks as the CLI (encoding, nesting depth, every record) and the same line numbers as the
client's file. A bad file changes nothing and answers 422 with its problems (the first 200,
and the total). The body's size is limited before this route sees it (BodyLimitMiddleware).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import psycopg
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from cloud.api.deps import AdminToken, SettingsDep
from cloud.api.problems import ProblemError, responses
from cloud.store.errors import TopologyValidationError
from cloud.store.topology import import_topology

router = APIRouter(prefix="/v1/topology", tags=["topology"])


class ImportResult(BaseModel):
    regions: int
    feeders: int
    transformers: int
    customers: int
    meters: int


def _run(dsn: str, body: bytes, max_bytes: int, suffix: str, currency: str | None) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"grid{suffix}"  # the suffix picks the format, as for the CLI
        path.write_bytes(body)
        with psycopg.connect(dsn, autocommit=True) as conn:
            return import_topology(conn, path, max_bytes=max_bytes, currency=currency)


_BODY = {"requestBody": {"required": True, "description": "a wattrail-grid v1 document "
                         "(docs/grid-file.md), UTF-8 JSON, or the MDM CSV (one row per "
                         "customer meter, docs/grid-file.md \"MDM CSV\")",
                         "content": {"application/json": {"schema": {"type": "object"}},
                                     "text/csv": {"schema": {"type": "string"}}}}}
_MEDIA = {"application/json": ".json", "text/csv": ".csv"}


@router.post("/import", response_model=ImportResult, openapi_extra=_BODY,
             responses=responses(401, 403, 413, 415, 422, 429))
async def import_grid(request: Request, settings: SettingsDep, _t: AdminToken,
                      currency: str | None = Query(
                          None, min_length=3, max_length=3, pattern="^[A-Z]{3}$",
                          description="ISO 4217 code of the CSV's tariffs (default EUR); the "
                                      "JSON document names its own")) -> ImportResult:
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if media not in _MEDIA:
        raise ProblemError(415, f"a grid is sent as application/json or text/csv, not {media!r}",
                           kind="unsupported-media-type")
    body = await request.body()
    try:
        counts = await asyncio.to_thread(_run, settings.dsn, body, settings.max_body_bytes,
                                         _MEDIA[media], currency)
    except TopologyValidationError as exc:
        raise ProblemError(422, f"{exc.total} problem(s) in the grid, nothing was imported",
                           kind="invalid-grid",
                           errors=[{"loc": [p.where], "msg": p.message, "type": "grid", "key": p.key,
                                   "line": p.line}
                                   for p in exc.problems[:200]]) from exc
    return ImportResult(**counts)
