"""`mount_dashboard(app)`: the grid engineers' and auditors' dashboard at `/dashboard/`.

Static files only (cloud/api/dashboard_static/: index.html, ES modules, CSS, and uPlot and
Leaflet vendored with their licences, see vendor/VENDOR.md), so it works offline and needs no
build step. The pages call the same `/v1/...` API as any client, with the bearer token the
user pastes (kept in the tab's sessionStorage): the dashboard has no privileges of its own,
and what a token may not read, its pages cannot show.

Every file goes out with a Content-Security-Policy that allows scripts, styles and requests
to this origin only: no CDN can sneak in, and injected markup could not run or call out.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC_DIR = Path(__file__).with_name("dashboard_static")

# 'unsafe-inline' for styles only: Leaflet and uPlot position their elements with inline
# style attributes. Images: Leaflet's icons, and `data:` for the empty favicon.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # revalidate every time (ETag/Last-Modified answer 304), so an upgrade is never half-cached
    "Cache-Control": "no-cache",
}


class DashboardFiles(StaticFiles):
    """StaticFiles with the dashboard's security and caching headers on every answer."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def mount_dashboard(app: FastAPI, path: str = "/dashboard") -> None:
    """Serve the dashboard under `path` (`path` itself redirects to `path/`)."""
    if not (STATIC_DIR / "index.html").is_file():
        raise RuntimeError(f"the dashboard's files are missing from {STATIC_DIR}; reinstall wattrail")

    async def to_index() -> RedirectResponse:
        return RedirectResponse(f"{path}/", status_code=307)

    app.add_api_route(path, to_index, methods=["GET"], include_in_schema=False)
    app.mount(path, DashboardFiles(directory=STATIC_DIR, html=True), name="dashboard")
