"""Topology import: the simulator's grid file lands in the archive, re-import is a no-op, and a
file with several bad records is refused as a whole with every problem and its line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud.store.errors import TopologyValidationError
from cloud.store.topology import import_topology
from firmware_sim.grid import Grid

pytestmark = pytest.mark.integration

_TABLES = ("regions", "feeders", "transformers", "customers", "meters")


def _counts(c: psycopg.Connection) -> dict[str, int]:
    return {t: int(c.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in _TABLES}  # type: ignore[index]


def test_import_and_reimport(conn: psycopg.Connection, grid: Grid, grid_file: Path) -> None:
    counts = import_topology(conn, grid_file)
    expected = {"regions": len(grid.regions), "feeders": len(grid.feeders),
                "transformers": len(grid.transformers), "customers": len(grid.customers),
                "meters": len(grid.customers) + len(grid.transformers) + len(grid.feeders)}
    assert counts == expected and _counts(conn) == expected
    snapshot = conn.execute("SELECT * FROM meters ORDER BY meter_id").fetchall()
    import_topology(conn, grid_file)
    assert _counts(conn) == expected
    assert conn.execute("SELECT * FROM meters ORDER BY meter_id").fetchall() == snapshot

    c = grid.customers[0]
    row = conn.execute("SELECT m.kind, m.make, m.register_map, m.transformer_id, cu.class,"
                       " cu.tariff_per_kwh::float, cu.has_pv, cu.lat FROM meters m"
                       " JOIN customers cu USING (customer_id) WHERE m.meter_id = %s",
                       [c.meter_id]).fetchone()
    assert row == ("customer", row[1], c.meter_model, c.transformer_id, c.kind, c.tariff_per_kwh,
                   c.pv_kwp > 0, c.lat)
    t = grid.transformers[0]
    assert conn.execute("SELECT kind, transformer_id FROM meters WHERE meter_id = %s",
                        [t.balance_meter_id]).fetchone() == ("balance", t.transformer_id)
    assert conn.execute("SELECT balance_meter_id, rating_kva FROM transformers WHERE transformer_id = %s",
                        [t.transformer_id]).fetchone() == (t.balance_meter_id, t.rating_kva)


def test_update_changes_a_record(conn: psycopg.Connection, grid_file: Path, tmp_path: Path) -> None:
    import_topology(conn, grid_file)
    doc = json.loads(grid_file.read_text())
    doc["customers"][0]["tariff_per_kwh"] = 0.31
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(doc, indent=1))
    import_topology(conn, changed)
    cid = doc["customers"][0]["customer_id"]
    assert conn.execute("SELECT tariff_per_kwh::float FROM customers WHERE customer_id = %s",
                        [cid]).fetchone() == (0.31,)


def test_bad_file_reports_every_problem_and_commits_nothing(conn: psycopg.Connection, grid_file: Path,
                                                            tmp_path: Path) -> None:
    doc = json.loads(grid_file.read_text())
    doc["customers"][2]["unit_id"] = 999
    doc["customers"][4]["transformer_id"] = "NO-SUCH-T"
    del doc["transformers"][1]["rating_kva"]
    doc["customers"][6]["meter_id"] = doc["customers"][5]["meter_id"]
    doc["feeders"][0]["head_meter_model"] = "abb-b23"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc, indent=1))
    text = bad.read_text().splitlines()

    with pytest.raises(TopologyValidationError) as info:
        import_topology(conn, bad)
    problems = info.value.problems
    assert [p.where for p in problems] == ["feeders[0]", "transformers[1]", "customers[2]",
                                           "customers[4]", "customers[6]"]
    for p in problems:  # each line is where that record's object opens
        assert p.line is not None and text[p.line - 1].strip() == "{"
    assert "unit_id must be an integer 2..247 (got 999)" in problems[2].message
    assert "'NO-SUCH-T' is not in transformers" in problems[3].message
    assert "used again" in problems[4].message
    assert all(n == 0 for n in _counts(conn).values())


def test_not_json_and_wrong_format(conn: psycopg.Connection, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "wattrail-grid",\n "version": 1,\n "regions": [}\n')
    with pytest.raises(TopologyValidationError) as info:
        import_topology(conn, broken)
    assert info.value.problems[0].line == 3
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else", "version": 1, "regions": [],
                                 "feeders": [], "transformers": [], "customers": []}))
    with pytest.raises(TopologyValidationError, match="not a wattrail-grid v1 file"):
        import_topology(conn, other)


@pytest.mark.parametrize(("mutate", "says"), [
    (lambda d: d["customers"][0].update(customer_id="C\x00"), "NUL"),
    (lambda d: d["customers"][0].update(tariff_per_kwh=1e7), "tariff_per_kwh must be <= 1000"),
    (lambda d: d["customers"][0].update(phases=2), "phases must be one of 1, 3"),
    (lambda d: d["feeders"][0].update(length_km=10**400), "length_km must be <="),
    (lambda d: d["customers"][0].update(customer_id="[bold]x[/bold]\ud800"), "lone surrogate"),
])
def test_the_cli_names_every_refused_value_without_a_traceback(
        db_dsn: str, conn: psycopg.Connection, grid_file: Path, tmp_path: Path,
        mutate: Any, says: str) -> None:
    from typer.testing import CliRunner

    from wattrail.cli import app

    doc = json.loads(grid_file.read_text())
    mutate(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc, indent=1))
    res = CliRunner().invoke(app, ["topology", "import", str(bad), "--dsn", db_dsn])
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert says in res.output and "nothing was imported" in res.output, res.output
    assert all(n == 0 for n in _counts(conn).values())


@pytest.mark.parametrize(("data", "says"), [
    ('{"format": "wattrail-grid"}'.encode("utf-16"), "UTF-16"),
    ('{"format": "wattrail-grïd"}'.encode("latin-1"), "not UTF-8"),
    (b"[" * 50_000 + b"]" * 50_000, "nested deeper"),
])
def test_the_cli_names_files_that_are_not_utf8_json(db_dsn: str, tmp_path: Path, data: bytes,
                                                    says: str) -> None:
    from typer.testing import CliRunner

    from wattrail.cli import app

    bad = tmp_path / "bad.json"
    bad.write_bytes(data)
    res = CliRunner().invoke(app, ["topology", "import", str(bad), "--dsn", db_dsn])
    assert res.exit_code == 1 and says in res.output, res.output
    small = CliRunner().invoke(app, ["topology", "import", str(bad), "--dsn", db_dsn,
                                     "--max-bytes", "10"])
    assert small.exit_code == 1 and "more than the limit of 10" in small.output, small.output
