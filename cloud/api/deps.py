"""Dependencies as `Annotated` aliases (the full-stack-fastapi-template model): a route says
`conn: ConnDep, token: ReaderToken` and gets a pooled connection and a checked token.

Per request, in order: the bearer token is looked up (401 if missing, unknown or revoked),
its rate-limit bucket is charged (429 with Retry-After), then its role is checked against the
route (403). The connection is shared by the token lookup and the route (FastAPI caches a
dependency within a request), so a request checks out one pooled connection, not two.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool

from cloud.api.config import Settings
from cloud.api.problems import ProblemError
from cloud.api.ratelimit import TokenBuckets
from cloud.api.tokens import Role, TokenInfo, lookup


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_conn(request: Request) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = request.app.state.pool
    async with pool.connection() as conn:
        yield conn


SettingsDep = Annotated[Settings, Depends(get_settings)]
ConnDep = Annotated[psycopg.AsyncConnection[Any], Depends(get_conn)]

# auto_error=False: a missing header must be our 401 problem, not FastAPI's bare 403
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer wtr_...` "
                     "(create one with `wattrail token create --role R --name N`)")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="wattrail"'}


async def current_token(
    request: Request, conn: ConnDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenInfo:
    if credentials is None:
        raise ProblemError(401, "send an API token: Authorization: Bearer <token>", kind="unauthenticated",
                      headers=_CHALLENGE)
    token = await lookup(conn, credentials.credentials)
    if token is None:
        raise ProblemError(401, "the API token is unknown or revoked", kind="invalid-token",
                      headers={"WWW-Authenticate": 'Bearer realm="wattrail", error="invalid_token"'})
    buckets: TokenBuckets = request.app.state.rate_limits
    wait = buckets.take(token.id)
    if wait > 0:
        retry = buckets.retry_after(wait)
        raise ProblemError(429, f"rate limit of {buckets.rate:g} requests/s (bursts of "
                      f"{buckets.burst:g}) exceeded for this token; retry in {retry} s",
                      kind="rate-limited", headers={"Retry-After": retry})
    request.state.token = token  # for the access log and metrics
    return token


def require(*roles: Role) -> Callable[..., Coroutine[Any, Any, TokenInfo]]:
    allowed = frozenset(roles)

    async def check(token: Annotated[TokenInfo, Depends(current_token)]) -> TokenInfo:
        if token.role not in allowed:
            raise ProblemError(403, f"role {token.role.value!r} may not call this; it needs one of "
                          f"{', '.join(sorted(r.value for r in allowed))}", kind="forbidden")
        return token

    return check


# Which roles may call what (the auth matrix in docs/api.md and tests/integration/api/).
READ_ROLES = (Role.ENGINEER, Role.AUDITOR, Role.ADMIN)
AUDIT_ROLES = (Role.AUDITOR, Role.ADMIN)
ADMIN_ROLES = (Role.ADMIN,)

ReaderToken = Annotated[TokenInfo, Depends(require(*READ_ROLES))]
AuditorToken = Annotated[TokenInfo, Depends(require(*AUDIT_ROLES))]
AdminToken = Annotated[TokenInfo, Depends(require(*ADMIN_ROLES))]
