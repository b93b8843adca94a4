"""Topology import (admin): the grid file (docs/grid-file.md) as the request body, loaded by
`cloud.store.topology.import_topology`, the same code as `wattrail topology import`.

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
from fastapi import APIRouter, Request
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


def _run(dsn: str, body: bytes, max_bytes: int) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "grid.json"
        path.write_bytes(body)
        with psycopg.connect(dsn, autocommit=True) as conn:
            return import_topology(conn, path, max_bytes=max_bytes)


_BODY = {"requestBody": {"required": True, "description": "a wattrail-grid v1 document "
                         "(docs/grid-file.md), UTF-8 JSON",
                         "content": {"application/json": {"schema": {"type": "object"}}}}}


@router.post("/import", response_model=ImportResult, openapi_extra=_BODY,
             responses=responses(401, 403, 413, 422, 429))
async def import_grid(request: Request, settings: SettingsDep, _t: AdminToken) -> ImportResult:
    body = await request.body()
    try:
        counts = await asyncio.to_thread(_run, settings.dsn, body, settings.max_body_bytes)
    except TopologyValidationError as exc:
        raise ProblemError(422, f"{exc.total} problem(s) in the grid, nothing was imported",
                           kind="invalid-grid",
                           errors=[{"loc": [p.where], "msg": p.message, "type": "grid", "key": p.key,
                                   "line": p.line}
                                   for p in exc.problems[:200]]) from exc
    return ImportResult(**counts)
