"""Digests of what a pipeline run stored: equal digests = the same rows, bit for bit.

Each table is read in a fixed order with its columns as PostgreSQL's text output (floats in
their shortest exact form, so equal text = equal doubles) and hashed. Columns that record when
or how fast something ran, or which run it was (identity keys), are left out: they are about
the machine, not the grid.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

# per table: columns that differ between two runs of the same seed by design
VOLATILE: dict[str, frozenset[str]] = {
    # rows written by the import path only; signed rows carry (agent_id, seq), both deterministic
    "readings": frozenset({"import_batch"}),
    "analysis_runs": frozenset({"run_id", "started_at", "finished_at", "seconds"}),
}
ANALYSIS_TABLES = ("analysis_runs", "analysis_loss", "analysis_loss_intervals", "analysis_suspects",
                   "analysis_power_quality", "analysis_outages", "analysis_regions")


def table_digest(conn: psycopg.Connection[Any], table: str) -> tuple[int, str]:
    """(rows, md5 of the rows' text in a total order) of `table` without its volatile columns."""
    skip = VOLATILE.get(table, frozenset()) | ({"run_id"} if table.startswith("analysis_") else set())
    cols = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
        "ORDER BY ordinal_position", [table]) if r[0] not in skip]
    assert cols, f"no table {table}"
    query = sql.SQL("SELECT count(*), md5(coalesce(string_agg(t.line, E'\\n' ORDER BY t.line), ''))"
                    " FROM (SELECT ROW({cols})::text AS line FROM {table}) t").format(
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols), table=sql.Identifier(table))
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def pipeline_digests(dsn: str) -> dict[str, tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        return {t: table_digest(conn, t) for t in ("readings", *ANALYSIS_TABLES)}
