"""Prometheus metrics: requests by route template, method and status, and their latency.

The route *template* (`/v1/meters/{meter_id}/readings`), not the URL, labels the series, so
the number of series stays bounded whatever ids clients send; unmatched paths (404s) are
`<unmatched>`.
Each app gets its own registry so that several apps in one process (tests) do not collide.
A plain ASGI middleware (not BaseHTTPMiddleware): it sees the status as it is sent and adds
no task per request.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("wattrail_api_requests_total", "HTTP requests answered",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("wattrail_api_request_seconds", "time to answer a request",
                                 ["route", "method"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500  # what the server answers if the app raises before sending

        async def tap(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tap)
        finally:
            route, method = self._template(scope), str(scope.get("method", ""))
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - t0)

    @staticmethod
    def _template(scope: Scope) -> str:
        # the router records the matched route in the (shared, mutated) scope
        route = scope.get("route")
        return str(getattr(route, "path", "<unmatched>"))
