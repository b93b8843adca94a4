"""`create_app(settings)`: the Wattrail query API (FastAPI).

Lifespan: an async psycopg pool opened without waiting, so the API starts (and `/healthz`
says 503) while the database is down, and serves as soon as it is back; connections are
checked before use, so a database restart costs no failed requests beyond the first retry.
Every connection gets a statement timeout (Settings.statement_timeout_ms).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from psycopg_pool import AsyncConnectionPool

from cloud.api import problems
from cloud.api.body_limit import BodyLimitMiddleware
from cloud.api.config import Settings
from cloud.api.metrics import ApiMetrics, MetricsMiddleware
from cloud.api.params import reject_unknown_query
from cloud.api.ratelimit import TokenBuckets
from cloud.api.routes import (
    analysis_runs,
    archive,
    audit,
    billing,
    export,
    health,
    loss,
    map_layers,
    outages,
    power_quality,
    readings,
    regional,
    revenue,
    suspects,
    tariffs,
    tlog,
    tokens,
    topology,
    topology_import,
    vee,
)

DESCRIPTION = """Loss reports, theft suspects, readings and the customer archive for grid
engineers; VEE, tariffs, billing determinants and the revenue report (meter data
management); the signed evidence trail for auditors. Authenticate with `Authorization: Bearer <token>`
(`wattrail token create --role engineer|auditor|admin --name N`). Errors are RFC 9457
`application/problem+json`. See docs/api.md."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.dsn, min_size=settings.pool_min_size, max_size=settings.pool_max_size,
            open=False, check=AsyncConnectionPool.check_connection, timeout=settings.pool_timeout_s,
            kwargs={"autocommit": True,
                    "options": f"-c statement_timeout={settings.statement_timeout_ms}"})
        await pool.open(wait=False)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    # every route may answer these problems (bad input, auth, rate limit, database down)
    app = FastAPI(title="Wattrail API", version="1", description=DESCRIPTION, lifespan=lifespan,
                  responses=problems.responses(400, 401, 403, 404, 422, 429, 500, 503),
                  dependencies=[Depends(reject_unknown_query)])
    app.state.settings = settings
    app.state.rate_limits = TokenBuckets(settings.rate_limit_per_s, settings.rate_limit_burst)
    app.state.metrics = ApiMetrics()
    problems.install(app)
    for module in (health, topology, map_layers, topology_import, readings, analysis_runs, loss,
                   suspects, power_quality, outages, regional, vee, billing, revenue, tariffs, archive,
                   audit, tlog, export, tokens):
        app.include_router(module.router)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: counts 413s
    from cloud.api.dashboard import mount_dashboard

    mount_dashboard(app)  # /dashboard: static pages that read this API; no CDN
    return app
