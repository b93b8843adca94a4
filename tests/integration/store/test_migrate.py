"""Migrations: applied once, recorded with checksums, edited files refused, concurrent runs
serialised, and the Apache build detected (so Timescale-license steps are skipped)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from cloud.store.errors import ChecksumMismatchError, MigrationError
from cloud.store.features import detect_features
from cloud.store.migrate import MIGRATIONS_DIR, discover, migrate

pytestmark = pytest.mark.integration


def test_migrate_is_idempotent_and_recorded(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as c:
        first = migrate(c)
        assert [m.version for m in first] == [m.version for m in discover() if not m.needs_license]
        assert migrate(c) == []
        rows = c.execute("SELECT version, name, sha256 FROM schema_migrations ORDER BY 1").fetchall()
        assert rows == [(m.version, m.name, m.sha256) for m in first]


def test_readings_is_a_hypertable_with_its_unique_key(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as c:
        migrate(c)
        hyper = {r[0] for r in c.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
        assert {"readings", "readings_15m", "readings_1h", "readings_1d"} <= hyper
        dims = c.execute("SELECT column_name FROM timescaledb_information.dimensions"
                         " WHERE hypertable_name = 'readings'").fetchall()
        assert dims == [("ts",)]
        idx = c.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'readings'").fetchall()
        assert any("UNIQUE" in d and "(meter_id, ts)" in d for (d,) in idx)


def test_apache_build_is_detected_and_licensed_steps_skipped(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as c:
        features = detect_features(c)
        assert features.license == "apache" and not features.licensed
        migrate(c)
        tsl = [m.version for m in discover() if m.needs_license]
        assert tsl, "the repo should carry at least one *.tsl.sql migration"
        recorded = {v for (v,) in c.execute("SELECT version FROM schema_migrations")}
        assert not set(tsl) & recorded
        # the licensed step would have switched compression on
        comp = c.execute("SELECT compression_enabled FROM timescaledb_information.hypertables"
                         " WHERE hypertable_name = 'readings'").fetchone()
        assert comp == (False,)


def test_edited_applied_migration_is_refused(db_dsn: str, tmp_path: Path) -> None:
    mdir = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, mdir)
    with psycopg.connect(db_dsn, autocommit=True) as c:
        migrate(c, mdir)
        target = mdir / "0002_agents.sql"
        target.write_text(target.read_text() + "\n-- an innocent-looking edit\n")
        with pytest.raises(ChecksumMismatchError) as info:
            migrate(c, mdir)
        assert info.value.version == 2 and "changed after it was applied" in str(info.value)
        assert "new migration" in str(info.value)


def test_failing_migration_rolls_back_the_whole_run(db_dsn: str, tmp_path: Path) -> None:
    mdir = tmp_path / "migrations"
    mdir.mkdir()
    (mdir / "0001_ok.sql").write_text("CREATE TABLE t_ok (x int);")
    (mdir / "0002_broken.sql").write_text("CREATE TABLE t_broken (x nosuchtype);")
    with psycopg.connect(db_dsn, autocommit=True) as c:
        with pytest.raises(MigrationError) as info:
            migrate(c, mdir)
        assert info.value.version == 2 and "0002_broken.sql" in str(info.value)
        assert c.execute("SELECT to_regclass('t_ok')").fetchone() == (None,)
        assert c.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)


def test_concurrent_migrations_apply_each_file_once(db_dsn: str) -> None:
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        try:
            with psycopg.connect(db_dsn, autocommit=True) as c:
                barrier.wait()
                results.append(len(migrate(c)))
        except BaseException as exc:  # collected and asserted on below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    expected = len([m for m in discover() if not m.needs_license])
    assert sorted(results) == [0, 0, expected]
