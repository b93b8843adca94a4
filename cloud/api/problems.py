"""Every 4xx/5xx leaves the API as RFC 9457 `application/problem+json`.

Who is at fault decides the status: the client's input (400 bad query semantics, 404, 422
validation), the client's credentials (401, 403, 429), or us and our database (500, 503). The
handlers here translate FastAPI's, Starlette's and psycopg's exceptions at the boundary, so a
route raises `ProblemError` (or lets a library error through) and never builds a response by hand.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
_TYPE_PREFIX = "urn:wattrail:problem:"


class ProblemDetail(BaseModel):
    """RFC 9457 problem details, plus `errors` for validation failures."""

    type: str = Field(default="about:blank", description="URI naming the kind of problem")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(default=None, description="the request path")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="one entry per invalid input (location, message)")


class ProblemError(Exception):
    """Raise from a route: becomes a problem+json response with this status."""

    def __init__(self, status: int, detail: str, *, kind: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.headers = headers
        self.extra = extra


def problem_response(request: Request, status: int, detail: str | None, *, kind: str | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": _TYPE_PREFIX + kind if kind else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "instance": request.url.path,
    }
    if detail:
        body["detail"] = detail
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        # pydantic puts the offending input and exception objects in `input`/`ctx`; they are
        # not always JSON-serialisable (and may echo secrets), so only location and message go out
        out.append({"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
                    "type": str(e.get("type", ""))})
    return out


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(request, exc.status, exc.detail, kind=exc.kind, headers=exc.headers,
                            **exc.extra)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers) if exc.headers else None
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem_response(request, exc.status_code, detail, headers=headers)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _clean_errors(exc.errors())
    first = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:3])
    return problem_response(request, 422, f"invalid request: {first}", kind="validation",
                            errors=errors)


async def _on_db_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable for %s: %s", request.url.path, exc)
    return problem_response(request, 503, "the database is unavailable or too slow right now; "
                            "retry later", kind="database-unavailable", headers={"Retry-After": "5"})


async def _on_data_error(request: Request, exc: Exception) -> JSONResponse:
    # a value the database refuses to compare or store (out-of-range timestamp or number):
    # the client's input, which our validation let through
    log.info("data error for %s: %s", request.url.path, exc)
    # say which value: the database's own first line names it ("value \"1e400\" is out of
    # range for type double precision", "date/time field value out of range: ..."), cut short
    said = ""
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        said = ": " + exc.diag.message_primary[:200]
    return problem_response(request, 400, f"a parameter is outside what the database accepts"
                            f"{said}; check the request's values against the API reference",
                            kind="bad-parameter")


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error for %s", request.url.path, exc_info=exc)
    return problem_response(request, 500, "internal error; it has been logged", kind="internal")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(psycopg.OperationalError, _on_db_unavailable)
    app.add_exception_handler(psycopg.errors.QueryCanceled, _on_db_unavailable)
    app.add_exception_handler(psycopg.DataError, _on_data_error)
    app.add_exception_handler(Exception, _on_unexpected)


# For route decorators: the problem responses each route may give, documented in OpenAPI.
def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ProblemDetail, "description": HTTPStatus(s).phrase,
                "content": {MEDIA_TYPE: {}}} for s in statuses}
