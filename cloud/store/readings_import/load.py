"""`import_readings_csv`: load a meter-data-management CSV export into `readings`.

Theory of operation (one transaction, so nothing partial is ever committed):
1. Hash the file; if import_batches already has that sha256, do nothing.
2. Parse and check every row (parse.py: syntax, the time window, energy per interval
   within limits.py's bounds), then ask the database which meter ids exist. Any
   problem: raise ReadingsValidationError listing them with line numbers.
3. Per meter, read the latest stored register at or before its first interval; a register
   that would pass MAX_REGISTER_WH from there is a problem too (same error). Convert the
   intervals to a cumulative register series from there (cumulate.py).
4. Write with binary COPY. If no stored reading falls inside the file's (meter, time) span —
   the usual case for history — COPY goes straight into the hypertable; its unique
   (meter_id, ts) index still rejects a row someone else wrote meanwhile, and then (and
   whenever the spans overlap) the rows go through a temporary staging table and
   `INSERT ... ON CONFLICT (meter_id, ts) DO NOTHING`, which keeps existing rows untouched.
   The direct path exists because staging costs ~3x (bench/historical_import.py measures both).
5. Record the batch (file name, sha256, rows, rows inserted).
6. Refresh the rollups for the imported span (`refresh=False` skips it), still inside the
   transaction: if that fails, nothing of the file is committed, and importing it again does
   it all. (Committed first, a failed refresh left a batch whose re-run said "already
   imported" and whose rollups nobody built.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
from psycopg.copy import QueuedLibpqWriter

from cloud.store.errors import Problem, ReadingsValidationError
from cloud.store.pgcopy.encode import Col, encode
from cloud.store.readings_import.columns import CUMULATIVE
from cloud.store.readings_import.cumulate import RegisterSeries, register_problems, to_register_series
from cloud.store.readings_import.limits import TimeWindow
from cloud.store.readings_import.parse import MAX_PROBLEMS, ParsedReadings, parse_readings_csv
from cloud.store.rollups import refresh_rollups

log = logging.getLogger(__name__)

_LOCK_KEY = 0x77740001  # pg_advisory_xact_lock: one historical import at a time
Progress = Callable[[str, int, int], None]  # (step, done, total)


@dataclass(frozen=True, slots=True)
class ImportResult:
    batch_id: int
    already_imported: bool  # the same file (sha256) was imported before: nothing was done
    rows: int  # data rows in the file
    inserted: int  # readings rows added (interval ends plus start-of-series rows)
    path: str  # 'direct' COPY, 'staging' (INSERT ... ON CONFLICT), or 'none'
    first_ts: datetime | None  # the span of the readings the file gives (also when already imported)
    last_ts: datetime | None
    rollups: dict[str, int] | None = None  # rows written per rollup table; None: not refreshed


def _to_dt(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, UTC)


def _unknown_meters(conn: psycopg.Connection, p: ParsedReadings) -> list[Problem]:
    known = {r[0] for r in conn.execute("SELECT meter_id FROM meters WHERE meter_id = ANY(%s)",
                                        [p.meter_ids])}
    problems = []
    for code, mid in enumerate(p.meter_ids):
        if mid in known:
            continue
        lines = p.line[p.meter_code == code]
        shown = ", ".join(str(x) for x in np.sort(lines)[:5]) + (", ..." if len(lines) > 5 else "")
        problems.append(Problem(int(lines.min()), f"unknown meter {mid!r} on {len(lines)} row(s) "
                                f"(lines {shown}); import the topology that has it first",
                                "meter_id", mid))
    return problems


def _baselines(conn: psycopg.Connection, p: ParsedReadings, first_us: np.ndarray, last_us: np.ndarray
               ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, bool]:
    """Per meter: register bases (import, and each CUMULATIVE column), whether a reading sits
    exactly at its first interval start, and whether any stored reading falls inside the
    file's span."""
    n = len(p.meter_ids)
    base_imp, at_start = np.zeros(n), np.zeros(n, bool)
    bases = {c: np.zeros(n) for c in CUMULATIVE}
    firsts = [_to_dt(int(x)) for x in first_us]
    lasts = [_to_dt(int(x)) for x in last_us]
    rows = conn.execute(
        f"SELECT m.i, r.import_wh, {', '.join('r.' + c for c in CUMULATIVE)}, r.ts = m.first FROM"
        " unnest(%s::text[], %s::timestamptz[]) WITH ORDINALITY AS m(meter_id, first, i)"
        f" CROSS JOIN LATERAL (SELECT import_wh, {', '.join(CUMULATIVE)}, ts FROM readings"
        "   WHERE meter_id = m.meter_id AND ts <= m.first ORDER BY ts DESC LIMIT 1) r",
        [p.meter_ids, firsts]).fetchall()
    for i, imp, *regs, exact in rows:
        base_imp[i - 1], at_start[i - 1] = imp or 0.0, exact
        for c, v in zip(CUMULATIVE, regs, strict=True):
            bases[c][i - 1] = v or 0.0
    overlap = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM unnest(%s::text[], %s::timestamptz[], %s::timestamptz[])"
        " AS m(meter_id, first, last) CROSS JOIN LATERAL (SELECT 1 FROM readings"
        "   WHERE meter_id = m.meter_id AND ts > m.first AND ts <= m.last LIMIT 1) r)",
        [p.meter_ids, firsts, lasts]).fetchone()
    return base_imp, bases, at_start, bool(overlap and overlap[0])


def _columns(p: ParsedReadings, s: RegisterSeries, batch_id: int, chunk_us: int) -> list[Col]:
    # Rows ordered by (chunk, meter, ts): each hypertable chunk then receives one contiguous
    # run appended in index order (~25% faster COPY than meter-major order). The series is
    # already (meter, ts)-sorted, so a stable sort on the chunk number is enough.
    order = np.argsort(s.ts_us // chunk_us, kind="stable")
    n = len(order)
    cols = [Col("meter_id", "text", s.meter_code[order],
                dictionary=tuple(m.encode() for m in p.meter_ids)),
            Col("ts", "timestamptz", s.ts_us[order]),
            Col("import_wh", "float8", s.import_wh[order])]
    for name, (vals, missing) in s.values.items():
        cols.append(Col(name, "float8", vals[order], missing[order] if missing.any() else None))
    cols.append(Col("provenance", "text", np.zeros(n, np.int64), dictionary=(b"imported",)))
    cols.append(Col("import_batch", "int8", np.full(n, batch_id, np.int64)))
    return cols


def _copy(cur: psycopg.Cursor, table: str, cols: list[Col], total: int, progress: Progress | None
          ) -> None:
    names = ", ".join(c.name for c in cols)
    # A writer thread sends while this thread encodes the next piece: client and server work
    # overlap on the two cores.
    with cur.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT binary)",
                  writer=QueuedLibpqWriter(cur)) as copy:
        done = 0
        for piece in encode(cols):
            copy.write(piece)
            done += max(0, (len(piece) - 19) // 88)  # progress only: rows are ~88 bytes
            if progress:
                progress("write", min(done, total), total)
    if progress:
        progress("write", total, total)


def _write(conn: psycopg.Connection, cols: list[Col], overlap: bool, progress: Progress | None
           ) -> tuple[int, str]:
    n = len(cols[0].values)
    with conn.cursor() as cur:
        if not overlap:
            try:
                with conn.transaction():  # a savepoint: a unique violation falls back below
                    _copy(cur, "readings", cols, n, progress)
                return n, "direct"
            except psycopg.errors.UniqueViolation:
                log.info("a concurrent writer stored some of these readings; using staging")
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS import_staging"
                    " (LIKE readings INCLUDING DEFAULTS) ON COMMIT DROP")
        cur.execute("TRUNCATE import_staging")
        _copy(cur, "import_staging", cols, n, progress)
        names = ", ".join(c.name for c in cols)
        cur.execute(f"INSERT INTO readings ({names}) SELECT {names} FROM import_staging"
                    " ON CONFLICT (meter_id, ts) DO NOTHING")
        return cur.rowcount, "staging"


def import_readings_csv(conn: psycopg.Connection, path: str | Path, *,
                        progress: Progress | None = None, allow_direct: bool = True,
                        window: TimeWindow | None = None, refresh: bool = True) -> ImportResult:
    """Import one CSV file and refresh the rollups for its span, in one transaction (a
    savepoint if the caller has one open). Raises ReadingsValidationError, with every problem
    and its line, when the file has any. `window`: the accepted time window (default
    TimeWindow.default(): 2000-01-01 .. now + 1 day)."""
    path = Path(path)
    data = path.read_bytes()
    sha = hashlib.sha256(data).digest()
    with conn.transaction():
        # Parsing is pure and may take a while on a big (or hostile) file: do it before taking
        # the lock that serialises imports, so a bad file never blocks anybody else's. A
        # re-import is still answered without parsing (checked first, and again under the lock).
        seen = _seen(conn, sha)
        if seen is not None:
            log.info("%s was imported before (batch %s): nothing to do", path, seen.batch_id)
            return seen
        if progress:
            progress("parse", 0, 1)
        parsed, problems, total = parse_readings_csv(data, window)
        if parsed is not None:
            unknown = _unknown_meters(conn, parsed)
            total += len(unknown)
            problems = sorted([*problems, *unknown][:MAX_PROBLEMS + len(unknown)],
                              key=lambda p: (p.line or 0, p.where))
        if parsed is None or total:
            raise ReadingsValidationError(str(path), problems, total)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        seen = _seen(conn, sha)  # a concurrent import of the same file may have won the lock
        if seen is not None:
            log.info("%s was imported meanwhile (batch %s): nothing to do", path, seen.batch_id)
            return seen
        base_imp, bases, at_start, overlap = _baselines(conn, parsed, *_spans(parsed))
        too_big = register_problems(parsed, base_imp, bases)
        if too_big:
            raise ReadingsValidationError(str(path), too_big)
        if progress:
            progress("parse", 1, 1)
        series = to_register_series(parsed, base_imp, bases, at_start)
        result = _store(conn, path, sha, parsed, series, overlap, progress, allow_direct)
        if refresh and result.first_ts is not None and result.last_ts is not None:
            if progress:
                progress("rollups", 0, 1)
            rollups = refresh_rollups(conn, result.first_ts, result.last_ts)
            if progress:
                progress("rollups", 1, 1)
            result = dataclasses.replace(result, rollups=rollups)
    return result


def _seen(conn: psycopg.Connection, sha: bytes) -> ImportResult | None:
    row = conn.execute("SELECT id, rows, first_ts, last_ts FROM import_batches WHERE sha256 = %s",
                       [sha]).fetchone()
    return None if row is None else ImportResult(int(row[0]), True, int(row[1]), 0, "none",
                                                 row[2], row[3])


def _spans(p: ParsedReadings) -> tuple[np.ndarray, np.ndarray]:
    """Per meter code: the start of its first interval and the end of its last, µs."""
    seg = np.flatnonzero(np.r_[True, p.meter_code[1:] != p.meter_code[:-1]]) if len(p.line) else \
        np.zeros(0, np.int64)
    first_us = np.zeros(len(p.meter_ids), np.int64)
    last_us = np.zeros(len(p.meter_ids), np.int64)
    first_us[p.meter_code[seg]] = p.start_us[seg]
    ends = np.r_[seg[1:] - 1, len(p.line) - 1] if len(seg) else seg
    last_us[p.meter_code[ends]] = p.end_us[ends]
    return first_us, last_us


def _store(conn: psycopg.Connection, path: Path, sha: bytes, p: ParsedReadings,
           series: RegisterSeries, overlap: bool, progress: Progress | None, allow_direct: bool
           ) -> ImportResult:
    row = conn.execute(
        "INSERT INTO import_batches (file_name, sha256, rows, inserted, first_ts, last_ts)"
        " VALUES (%s, %s, %s, 0, %s, %s) RETURNING id",
        [path.name, sha, p.rows, _to_dt(int(series.ts_us.min())) if len(series) else None,
         _to_dt(int(series.ts_us.max())) if len(series) else None]).fetchone()
    assert row is not None  # INSERT ... RETURNING always returns the row
    batch_id = int(row[0])
    chunk = conn.execute(
        "SELECT coalesce((SELECT extract(epoch FROM time_interval)::bigint * 1000000"
        " FROM timescaledb_information.dimensions WHERE hypertable_name = 'readings'"
        " AND column_name = 'ts'), 86400000000)").fetchone()
    chunk_us = int(chunk[0]) if chunk else 86_400_000_000
    inserted, how = 0, "none"
    if len(series):
        inserted, how = _write(conn, _columns(p, series, batch_id, chunk_us),
                               overlap or not allow_direct, progress)
    conn.execute("UPDATE import_batches SET inserted = %s WHERE id = %s", [inserted, batch_id])
    log.info("%s: %d rows -> %d readings inserted (%s), batch %d", path, p.rows, inserted, how, batch_id)
    first = _to_dt(int(series.ts_us.min())) if len(series) else None
    last = _to_dt(int(series.ts_us.max())) if len(series) else None
    return ImportResult(batch_id, False, p.rows, inserted, how, first, last)


