"""Topology import (admin): the grid file (docs/grid-file.md) as the request body, loaded by
`cloud.store.topology.import_topology`, the same code as `wattrail topology import`.

The importer takes a file and a sync connection, so the body is written to a temporary file
and imported in a worker thread with a connection of its own; a bad file changes nothing
and answers 422 with every problem listed.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Body
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


def _run(dsn: str, doc: dict[str, Any]) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "grid.json"
        # indented: one record per line, so the importer's problems point at useful line numbers
        path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        with psycopg.connect(dsn, autocommit=True) as conn:
            return import_topology(conn, path)


@router.post("/import", response_model=ImportResult, responses=responses(401, 403, 422, 429))
async def import_grid(settings: SettingsDep, _t: AdminToken,
                      grid: Annotated[dict[str, Any], Body(description="a wattrail-grid v1 document")],
                      ) -> ImportResult:
    try:
        counts = await asyncio.to_thread(_run, settings.dsn, grid)
    except TopologyValidationError as exc:
        raise ProblemError(422, f"{exc.total} problem(s) in the grid, nothing was imported",
                           kind="invalid-grid",
                           errors=[{"loc": [p.where], "msg": p.message, "type": "grid", "key": p.key}
                                   for p in exc.problems[:200]]) from exc
    return ImportResult(**counts)
