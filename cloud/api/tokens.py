"""API tokens: 256 random bits shown once, stored as SHA-256, each with one role.

Roles, and what they may call (cloud/api/deps.py enforces it per route):
    engineer  topology, readings, reports (loss, suspects, quality, outages, forecast)
    auditor   the audit trail, and read-only everything an engineer reads
    admin     everything, plus tokens and the topology import (an admin can mint any token,
              so withholding reads from it would protect nothing)

`create_token` / `revoke_token` / `list_tokens` take a sync connection (the CLI, the admin
routes run them through the async variants below); `lookup` is what every request runs.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

PREFIX = "wtr_"  # makes a leaked token recognisable to secret scanners


class Role(enum.StrEnum):
    ENGINEER = "engineer"
    AUDITOR = "auditor"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None = None
    expires_at: datetime | None = None  # None: never


@dataclass(frozen=True, slots=True)
class NewToken:
    info: TokenInfo
    secret: str  # the bearer token itself; never stored, shown to the creator once


class TokenError(ValueError):
    """Bad input to token management (unknown role, empty name, unknown id)."""


def hash_token(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def _check(role: str, name: str) -> Role:
    try:
        r = Role(role)
    except ValueError:
        raise TokenError(f"unknown role {role!r}; use one of {', '.join(Role)}") from None
    if not name.strip() or len(name) > 200:
        raise TokenError("a token needs a name of 1-200 characters (who or what uses it)")
    return r


_COLS = "id, name, role, created_at, revoked_at, expires_at"
_INSERT = ("INSERT INTO api_tokens (token_hash, name, role, expires_at) "
           "VALUES (%s, %s, %s, now() + %s * interval '1 second') RETURNING " + _COLS)
MAX_EXPIRY_DAYS = 3660  # ten years; "never" is no expiry at all


def _info(row: Any) -> TokenInfo:
    return TokenInfo(int(row[0]), str(row[1]), Role(row[2]), row[3], row[4], row[5])


def _expiry_s(expires_in_days: float | None) -> float | None:
    if expires_in_days is None:
        return None
    if not 0 < expires_in_days <= MAX_EXPIRY_DAYS:  # also refuses NaN
        raise TokenError(f"a token expires after more than 0 and at most {MAX_EXPIRY_DAYS} "
                         f"days (got {expires_in_days}); leave it out for no expiry")
    return expires_in_days * 86400


def create_token(conn: psycopg.Connection[Any], role: str, name: str,
                 expires_in_days: float | None = None) -> NewToken:
    r = _check(role, name)
    secret = _new_secret()
    expiry = _expiry_s(expires_in_days)
    with conn.transaction():
        row = conn.execute(_INSERT, [hash_token(secret), name, r.value, expiry]).fetchone()
    assert row is not None
    return NewToken(_info(row), secret)


def revoke_token(conn: psycopg.Connection[Any], token_id: int) -> TokenInfo:
    """Revoke at once (every request looks the token up). Revoking twice keeps the first time."""
    with conn.transaction():
        row = conn.execute(f"UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) "
                           f"WHERE id = %s RETURNING {_COLS}", [token_id]).fetchone()
    if row is None:
        raise TokenError(f"no token with id {token_id}")
    return _info(row)


def list_tokens(conn: psycopg.Connection[Any]) -> list[TokenInfo]:
    return [_info(r) for r in conn.execute(f"SELECT {_COLS} FROM api_tokens ORDER BY id")]


async def acreate_token(conn: psycopg.AsyncConnection[Any], role: str, name: str,
                        expires_in_days: float | None = None) -> NewToken:
    r = _check(role, name)
    secret = _new_secret()
    expiry = _expiry_s(expires_in_days)
    async with conn.transaction():
        row = await (await conn.execute(_INSERT, [hash_token(secret), name, r.value, expiry])
                     ).fetchone()
    assert row is not None
    return NewToken(_info(row), secret)


async def arevoke_token(conn: psycopg.AsyncConnection[Any], token_id: int) -> TokenInfo | None:
    async with conn.transaction():
        cur = await conn.execute(f"UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) "
                                 f"WHERE id = %s RETURNING {_COLS}", [token_id])
        row = await cur.fetchone()
    return None if row is None else _info(row)


async def alist_tokens(conn: psycopg.AsyncConnection[Any], after_id: int, limit: int
                       ) -> list[TokenInfo]:
    cur = await conn.execute(f"SELECT {_COLS} FROM api_tokens WHERE id > %s ORDER BY id LIMIT %s",
                             [after_id, limit])
    return [_info(r) for r in await cur.fetchall()]


async def lookup(conn: psycopg.AsyncConnection[Any], secret: str) -> TokenInfo | None:
    """The active token with this secret, or None (unknown, revoked and expired look the
    same)."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None  # not ours: no query
    cur = await conn.execute(f"SELECT {_COLS} FROM api_tokens WHERE token_hash = %s "
                             "AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
                             [hash_token(secret)])
    row = await cur.fetchone()
    return None if row is None else _info(row)
