"""Retention: drop raw readings older than a horizon with TimescaleDB's `drop_chunks`.

Only the `readings` hypertable is trimmed. Envelopes are never dropped here: they are the
evidence the audit trail and the transparency log point at, and each one still proves what
its readings were after the rows themselves are gone. Rollups (`readings_15m/1h/1d`) are kept
too, so loss reports over old periods still work. Chunks are whole days or weeks, so a drop
removes only chunks entirely older than the horizon, never part of one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg


def drop_old_readings(conn: psycopg.Connection[Any], keep_days: int,
                      now: dt.datetime | None = None) -> list[str]:
    """Drop `readings` chunks entirely older than `keep_days`; returns the dropped chunk names."""
    if keep_days < 1:
        raise ValueError(f"keep_days must be >= 1, got {keep_days}")
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=keep_days)
    with conn.transaction():
        rows = conn.execute("SELECT drop_chunks('readings', older_than => %s)", [cutoff]).fetchall()
    return [str(r[0]) for r in rows]
