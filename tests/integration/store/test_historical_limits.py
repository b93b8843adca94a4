"""`wattrail readings import` against the real database: inputs the import once stored as
corrupted numbers, overflowed registers or years it could not roll up are errors naming their
line and store nothing; a register that would pass the bound with what is already stored is
too; the rollups are part of the import's transaction, so a failed refresh leaves nothing
behind and the re-run does everything (issue 2/8, items 4 to 6)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from typer.testing import CliRunner

from cloud.store.errors import ReadingsValidationError
from cloud.store.readings_import.load import import_readings_csv
from firmware_sim.grid import Grid
from wattrail.cli import app

pytestmark = pytest.mark.integration

runner = CliRunner()
HEADER = "meter_id,interval_start,interval_minutes,import_wh"


def _count(c: psycopg.Connection, sql: str) -> int:
    row = c.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def _stored(c: psycopg.Connection) -> tuple[int, int, int]:
    return (_count(c, "SELECT count(*) FROM readings"), _count(c, "SELECT count(*) FROM import_batches"),
            _count(c, "SELECT count(*) FROM readings_15m"))


def _import(dsn: str, path: Path, *args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["readings", "import", str(path), "--dsn", dsn, *args])
    return res.exit_code, " ".join(res.output.split())  # rich wraps long lines


def _file(tmp_path: Path, meter: str, *rows: str) -> Path:
    path = tmp_path / "in.csv"
    path.write_text("\n".join([HEADER, f"{meter},2024-06-01T00:00:00Z,15,10",
                               *(r.format(m=meter) for r in rows)]) + "\n")
    return path


BAD = {
    # item 4: what the compiled tokenizer read as numbers
    "minutes 15.5": ["{m},2024-06-01T00:15:00Z,15.5,1"],
    "minutes 1/": ["{m},2024-06-01T00:15:00Z,1/,1"],
    "minutes quoted 1,5": ['{m},2024-06-01T00:15:00Z,"1,5",1'],
    "hour 1.": ["{m},2024-06-01T1.:00:00Z,15,1"],
    "year 20.4": ["{m},20.4-06-01T00:15:00Z,15,1"],
    # item 5: energy that overflowed the int64 mWh register
    "two rows of 5e15": ["{m},2024-06-01T00:15:00Z,15,5e15", "{m},2024-06-01T00:30:00Z,15,5e15"],
    "1e308": ["{m},2024-06-01T00:15:00Z,15,1e308"],
    "5000 digits": ["{m},2024-06-01T00:15:00Z,15," + "9" * 5000],
    "1e309": ["{m},2024-06-01T00:15:00Z,15,1e309"],
    # item 6: years outside the time window
    "year 9999": ["{m},9999-12-31T23:30:00Z,15,1"],
    "year 0001": ["{m},0001-06-01T00:15:00Z,15,1"],
    "year 1969": ["{m},1969-06-01T00:15:00Z,15,1"],
}


@pytest.mark.parametrize("rows", list(BAD.values()), ids=list(BAD))
def test_cli_rejects_each_input_naming_its_line_and_stores_nothing(
        archive: psycopg.Connection, grid: Grid, db_dsn: str, tmp_path: Path, rows: list[str]) -> None:
    code, out = _import(db_dsn, _file(tmp_path, grid.customers[0].meter_id, *rows))
    assert code == 1, out
    assert f"{len(rows)} problem(s), nothing was imported" in out
    for line in range(3, 3 + len(rows)):
        assert f"line {line} (" in out
    assert _stored(archive) == (0, 0, 0)


def test_register_bound_counts_what_is_already_stored(archive: psycopg.Connection, grid: Grid,
                                                       tmp_path: Path) -> None:
    m = grid.customers[0].meter_id
    year = 365 * 24 * 60  # minutes; 100 MW x 8760 h = 8.76e11 Wh is the interval bound
    first = tmp_path / "2001.csv"
    first.write_text(f"{HEADER}\n{m},2001-01-01T00:00:00Z,{year},8e11\n")
    import_readings_csv(archive, first)
    before = _stored(archive)
    second = tmp_path / "2002.csv"
    second.write_text(f"{HEADER}\n{m},2002-01-01T00:00:00Z,{year},8e11\n")
    with pytest.raises(ReadingsValidationError) as info:
        import_readings_csv(archive, second)
    [problem] = info.value.problems
    assert (problem.line, problem.key, problem.where) == (2, m, "import_wh")
    assert "1.6e+12 Wh" in problem.message and "8e+11 Wh, the meter's stored register" in problem.message
    assert _stored(archive) == before


def test_a_failed_rollup_refresh_commits_nothing_and_the_rerun_completes(
        archive: psycopg.Connection, grid: Grid, db_dsn: str, tmp_path: Path) -> None:
    path = _file(tmp_path, grid.customers[0].meter_id, "{m},2024-06-01T00:15:00Z,15,20")
    impatient = make_conninfo(db_dsn, options="-c lock_timeout=300")
    with psycopg.connect(db_dsn) as holder:  # a transaction that keeps the rollups locked
        holder.execute("LOCK TABLE readings_15m IN ACCESS EXCLUSIVE MODE")
        code, out = _import(impatient, path)
        holder.rollback()
    assert code == 2 and "the database refused, nothing was imported" in out and "LockNotAvailable" in out
    assert _stored(archive) == (0, 0, 0)
    code, out = _import(db_dsn, path)
    assert code == 0 and "3 readings" in out and "readings_15m: 2 rows" in out, out
    assert _stored(archive) == (3, 1, 2)
    rollup = archive.execute("SELECT import_wh FROM readings_1d").fetchall()
    assert rollup == [(30.0,)]


def test_no_refresh_and_the_rerun_say_how_to_build_the_rollups(
        archive: psycopg.Connection, grid: Grid, db_dsn: str, tmp_path: Path) -> None:
    path = _file(tmp_path, grid.customers[0].meter_id)
    command = "wattrail db refresh --start 2024-06-01T00:00:00 --end 2024-06-01T00:15:00"
    code, out = _import(db_dsn, path, "--no-refresh")
    assert code == 0 and f"rollups not refreshed (--no-refresh); build them with: {command}" in out, out
    assert _stored(archive) == (2, 1, 0)
    code, out = _import(db_dsn, path)
    assert code == 0 and "already imported" in out and command in out, out
    res = runner.invoke(app, [*command.split()[1:], "--dsn", db_dsn])
    assert res.exit_code == 0, res.output
    assert _stored(archive) == (2, 1, 1)


def test_the_time_window_is_a_cli_option(archive: psycopg.Connection, grid: Grid, db_dsn: str,
                                         tmp_path: Path) -> None:
    m = grid.customers[0].meter_id
    path = tmp_path / "old.csv"
    path.write_text(f"{HEADER}\n{m},1969-12-31T23:45:00Z,15,10\n")
    code, out = _import(db_dsn, path)
    assert code == 1 and "line 2 (interval_start)" in out and "outside the accepted time window" in out
    code, out = _import(db_dsn, path, "--not-before", "1960-01-01")
    assert code == 0, out
    assert archive.execute("SELECT bucket, import_wh FROM readings_1d").fetchall() == [
        (datetime(1969, 12, 31, tzinfo=UTC), 10.0)]
    code, out = _import(db_dsn, path, "--not-before", "1800-01-01")
    assert code == 2 and "widest window the import accepts" in out, out
