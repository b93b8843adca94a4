"""A database nobody has set up: store commands say "run wattrail db migrate" and exit 2, and
`db migrate` creates the timescaledb extension itself (the server has it preloaded)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from tests.conftest import Services, drop_database
from wattrail.cli import app

pytestmark = pytest.mark.integration


@pytest.fixture
def plain_db(services: Services) -> Iterator[str]:
    name = f"plain_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.dsn_admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        yield services.dsn_for(name)
    finally:
        drop_database(services, name)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_store_commands_on_an_unmigrated_database_say_what_to_do(plain_db: str, tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    csv.write_text("meter_id,interval_start,interval_minutes,import_wh\nM1,2024-06-01T00:00:00Z,15,1\n")
    grid = tmp_path / "g.json"  # a valid grid: the file is checked before the database
    grid.write_text(json.dumps({
        "format": "wattrail-grid", "version": 1, "regions": [{"region_id": "R", "name": "R"}],
        "feeders": [{"feeder_id": "F", "region_id": "R"}],
        "transformers": [{"transformer_id": "T", "feeder_id": "F", "rating_kva": 100}],
        "customers": [{"meter_id": "M", "transformer_id": "T", "kind": "residential",
                       "tariff_per_kwh": 0.2}]}))
    runner = CliRunner()
    for args in (["readings", "import", str(csv)], ["topology", "import", str(grid)],
                 ["suspects", "list"], ["loss", "list"], ["db", "refresh", "--start", "2024-01-01",
                                                          "--end", "2024-01-02"]):
        res = runner.invoke(app, [*args, "--dsn", plain_db])
        assert res.exit_code == 2, (args, res.output)
        assert "run `wattrail db migrate`" in _one_line(res.output), (args, res.output)
        assert "Traceback" not in res.output


def test_db_migrate_creates_the_extension_on_a_fresh_database(plain_db: str) -> None:
    with psycopg.connect(plain_db) as conn:
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None
    res = CliRunner().invoke(app, ["db", "migrate", "--dsn", plain_db])
    assert res.exit_code == 0, res.output
    with psycopg.connect(plain_db) as conn:
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() == (1,)
        assert conn.execute("SELECT to_regclass('readings')").fetchone() == ("readings",)


def test_db_migrate_says_how_when_it_may_not_create_the_extension(plain_db: str) -> None:
    role = f"weak_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(plain_db, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'x'")
        conn.execute(f"GRANT ALL ON SCHEMA public TO {role}")
        # no CREATE on the database: timescaledb is a trusted extension, which a role with that
        # privilege may create; without it only a superuser can
    try:
        info = psycopg.conninfo.conninfo_to_dict(plain_db)
        info.update(user=role, password="x")
        weak = psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
        res = CliRunner().invoke(app, ["db", "migrate", "--dsn", weak])
        assert res.exit_code == 2, res.output
        out = _one_line(res.output)
        assert "CREATE EXTENSION timescaledb;" in out and "superuser" in out
        assert "Traceback" not in res.output
    finally:
        with psycopg.connect(plain_db, autocommit=True) as conn:
            conn.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
