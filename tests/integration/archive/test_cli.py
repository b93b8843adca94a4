"""`wattrail archive ...` against a real database: the operator's path from check to accepted
correction, and the errors that say the fix."""

from __future__ import annotations

import json

import psycopg
import pytest
from typer.testing import CliRunner

from cloud.analytics.batch import analyze
from wattrail.cli import app

from .conftest import END, START, STEP, Corrupted

pytestmark = pytest.mark.integration


def test_archive_commands(corrupted: Corrupted) -> None:
    c = corrupted
    run = CliRunner().invoke
    env = {"WATTRAIL_DSN": c.dsn, "COLUMNS": "250"}

    r = run(app, ["archive", "suspects"], env=env)
    assert r.exit_code == 1 and "wattrail archive check" in r.output  # nothing checked yet

    r = run(app, ["archive", "check", "--days", "5"], env=env)
    assert r.exit_code == 0, r.output
    assert "connectivity" in r.output and "completeness" in r.output  # the progress lines
    assert "4 connectivity suspicions" in r.output
    for mid in [*c.moved, *c.rephased]:
        assert mid in r.output

    # the loss and suspect lists mark what rests on a suspected meter
    with psycopg.connect(c.dsn, autocommit=True) as conn:
        analyze(conn, START, END, step_s=STEP)
    r = run(app, ["loss", "list", "--format", "json"], env=env)
    assert r.exit_code == 0, r.output
    marked = {x["entity_id"] for x in json.loads(r.stdout)["rows"] if x["connectivity_suspect"]}
    assert marked == set(c.moved.values()) | {c.true_tx[m] for m in [*c.moved, *c.rephased]}
    r = run(app, ["suspects", "list", "--format", "json", "--top", "500"], env=env)
    assert r.exit_code == 0, r.output
    for x in json.loads(r.stdout)["rows"]:
        assert x["connectivity_suspect"] == (x["meter_id"] in {*c.moved, *c.rephased})

    r = run(app, ["archive", "issues", "--kind", "not_in_archive", "--json"], env=env)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["object_id"] for x in rows] == [c.unrecorded] and rows[0]["fix"]
    r = run(app, ["archive", "issues", "--kind", "bogus"], env=env)
    assert r.exit_code == 2 and "never_reported" in r.output

    mid = next(iter(c.moved))
    r = run(app, ["archive", "accept", mid, "--actor", "eng-cli", "--comment", "ticket 7", "--no-recompute"],
            env=env)
    assert r.exit_code == 0, r.output
    assert f"{c.moved[mid]} phase" in r.output and c.true_tx[mid] in r.output
    r = run(app, ["archive", "accept", mid, "--actor", "eng-cli"], env=env)
    assert r.exit_code == 1 and "no open connectivity suspicion" in r.output
    r = run(app, ["archive", "corrections"], env=env)
    assert r.exit_code == 0 and "eng-cli" in r.output and "ticket 7" in r.output
    r = run(app, ["archive", "suspects", "--status", "accepted"], env=env)
    assert r.exit_code == 0 and mid in r.output
    with psycopg.connect(c.dsn) as conn:
        row = conn.execute("SELECT c.transformer_id FROM meters m JOIN customers c USING (customer_id)"
                           " WHERE meter_id = %s", [mid]).fetchone()
    assert row == (c.true_tx[mid],)


def test_archive_check_says_the_fix(corrupted: Corrupted) -> None:
    r = CliRunner().invoke(app, ["archive", "check"], env={"WATTRAIL_DSN": "postgresql://nobody@127.0.0.1:1/x"})
    assert r.exit_code == 2 and "cannot connect" in r.output
