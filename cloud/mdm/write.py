"""Writing a VEE chunk: its exceptions into the post-VEE layer (`vee_intervals`) and its
meter-day summary (`vee_days`), as binary COPY (cloud/store/pgcopy) so a month of 100,000
meters is not millions of Python rows. Raw readings are not touched."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from cloud.mdm.estimation import Estimated, Method
from cloud.mdm.validation import Series, Validation
from cloud.store import mdm_sql
from cloud.store.pgcopy.encode import Col, encode

_PG_EPOCH_DAY = 10_957  # 2000-01-01 in days since 1970-01-01: binary dates count from there


def _copy(conn: psycopg.Connection[Any], statement: str, cols: list[Col]) -> None:
    if len(cols[0].values) == 0:
        return
    with conn.cursor() as cur, cur.copy(statement.replace("FROM STDIN",
                                                          "FROM STDIN (FORMAT BINARY)")) as cp:
        for piece in encode(cols):
            cp.write(piece)


def _ids(names: list[str]) -> tuple[bytes, ...]:
    return tuple(n.encode() for n in names)


def write_intervals(conn: psycopg.Connection[Any], run_id: int, meter_ids: list[str],
                    s: Series, v: Validation, e: Estimated,
                    check: npt.NDArray[np.float64] | None = None) -> int:
    """The intervals a rule flagged or VEE changed, with the balance meter's check where one
    was made; returns how many rows."""
    raw = s.import_kwh
    changed = (v.flags != 0) | (e.method != Method.ACTUAL)
    rows, cols = np.nonzero(changed)
    n = rows.size
    value = e.value[rows, cols]
    raw_v = raw[rows, cols]
    chk = check[rows, cols] if check is not None else np.full(rows.size, np.nan)
    _copy(conn, mdm_sql.COPY_VEE_INTERVALS, [
        Col("meter_id", "text", rows.astype(np.int64), dictionary=_ids(meter_ids)),
        Col("bucket", "timestamptz", s.ts_s[cols].astype(np.int64) * 1_000_000),
        Col("source", "text", np.zeros(n, np.int64), dictionary=(b"vee",)),
        Col("version", "int8", np.full(n, run_id, np.int64)),
        Col("run_id", "int8", np.full(n, run_id, np.int64)),
        Col("raw_kwh", "float8", np.nan_to_num(raw_v), missing=np.isnan(raw_v)),
        Col("value_kwh", "float8", np.nan_to_num(value), missing=np.isnan(value)),
        Col("flags", "int4", v.flags[rows, cols].astype(np.int32)),
        Col("method", "int2", e.method[rows, cols].astype(np.int16)),
        Col("check_kwh", "float8", np.nan_to_num(chk), missing=np.isnan(chk)),
    ])
    return int(n)


def write_days(conn: psycopg.Connection[Any], run_id: int, meter_ids: list[str], s: Series,
               v: Validation, e: Estimated, status: npt.NDArray[np.int8]) -> int:
    """One row per meter and local day."""
    days = np.unique(s.parts.day)
    di = np.searchsorted(days, s.parts.day)
    m, nd = status.shape
    flags = np.zeros((m, nd), np.int64)
    counts = np.zeros(nd, np.int64)
    est = np.zeros((m, nd), np.int64)
    missing = np.zeros((m, nd), np.int64)
    estimated = e.estimated
    still = np.isnan(e.value)  # missing after VEE and edits
    for d in range(nd):
        sel = di == d
        counts[d] = int(sel.sum())
        flags[:, d] = np.bitwise_or.reduce(v.flags[:, sel].astype(np.int64), axis=1)
        est[:, d] = estimated[:, sel].sum(axis=1)
        missing[:, d] = still[:, sel].sum(axis=1)
    r = np.repeat(np.arange(m), nd)
    c = np.tile(np.arange(nd), m)
    _copy(conn, mdm_sql.COPY_VEE_DAYS, [
        Col("run_id", "int8", np.full(m * nd, run_id, np.int64)),
        Col("meter_id", "text", r.astype(np.int64), dictionary=_ids(meter_ids)),
        Col("day", "int4", (days[c] - _PG_EPOCH_DAY).astype(np.int32)),
        Col("status", "int2", status.reshape(-1).astype(np.int16)),
        Col("flags", "int4", flags.reshape(-1).astype(np.int32)),
        Col("intervals", "int4", counts[c].astype(np.int32)),
        Col("estimated", "int4", est.reshape(-1).astype(np.int32)),
        Col("missing", "int4", missing.reshape(-1).astype(np.int32)),
    ])
    return int(m * nd)
