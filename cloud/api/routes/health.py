"""Operations endpoints, without a token: liveness with a database round trip, and metrics.
Keep them off the public network (they tell nothing secret, but cost a query)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str
    database: str


@router.get("/healthz", response_model=Health,
            responses={503: {"model": Health, "description": "the database is not reachable"}})
async def healthz(request: Request) -> JSONResponse:
    pool: AsyncConnectionPool[Any] = request.app.state.pool
    wait = min(3.0, request.app.state.settings.pool_timeout_s)
    try:
        async with asyncio.timeout(wait):  # a health check must answer, even when the DB hangs
            async with pool.connection(timeout=wait) as conn:
                await conn.execute("SELECT 1")
    except Exception as exc:  # any failure at all means "not healthy"; the body says which
        body = Health(status="unavailable", database=f"{type(exc).__name__}: {exc}"[:300])
        return JSONResponse(body.model_dump(), status_code=503)
    return JSONResponse(Health(status="ok", database="reachable").model_dump())


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics(request: Request) -> Response:
    render: Any = request.app.state.metrics.render
    response: Response = render()
    return response
