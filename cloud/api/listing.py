"""Keyset pages over one SQL query: `WHERE (sort key) > (cursor) ORDER BY sort key LIMIT n+1`.

One more row than asked tells whether a next page exists without a count(*). The sort key
columns must be unique together (ids are primary keys), so no row is skipped or repeated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cloud.api import cursors


async def rows(conn: psycopg.AsyncConnection[Any], query: str,
               params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def one(conn: psycopg.AsyncConnection[Any], query: str,
              params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


async def keyset_page(
    conn: psycopg.AsyncConnection[Any], *, kind: str, select: str, where: list[str],
    params: list[Any], key: Sequence[str], key_types: tuple[type, ...], cursor: str | None,
    limit: int, key_names: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Rows of `select` (the SELECT ... FROM ... part) filtered by `where` (AND-ed SQL with %s
    placeholders matching `params`), ascending by the `key` expressions (each also selected
    under the same name as the last part of the expression, e.g. `t.transformer_id`, or under
    the matching name in `key_names`). For a descending order, key on a negated expression."""
    after = cursors.decode(kind, cursor, key_types)
    conds, args = list(where), list(params)
    if after is not None:
        conds.append(f"({', '.join(key)}) > ({', '.join(['%s'] * len(key))})")
        args.extend(after)
    text = select + (" WHERE " + " AND ".join(conds) if conds else "")
    text += f" ORDER BY {', '.join(key)} LIMIT %s"
    args.append(limit + 1)
    found = await rows(conn, text, args)  # composed only from this module's callers' literals
    nxt = None
    if len(found) > limit:
        found = found[:limit]
        last = found[-1]
        names = key_names or [k.rsplit(".", 1)[-1] for k in key]
        nxt = cursors.encode(kind, [last[n] for n in names])
    return found, nxt


def finite(r: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf floats as None: they are not JSON. The analytics writer stores NULL for NaN;
    this guards rows written any other way."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
