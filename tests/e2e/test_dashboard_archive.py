"""The dashboard's Archive page in a real browser (Chromium driven by playwright-core, as
tests/e2e/test_dashboard.py does, with its driver and checks), against the real API on a free
port, reading the corrupted archive of tests/integration/archive/conftest.py (66 simulated
meters, 4 transformers, 5 days at 15 min; two meters recorded on the other transformer of
their feeder, two on the wrong phase, one reporting meter with no record) checked for real by
`cloud.archive.store.run_check`.

The page must load cleanly (no console error, no failed or off-server request) and show what
the check found: the four suspected meters with the transformer and phase the data suggests,
the unrecorded meter as a `not_in_archive` finding, the findings per region; a kind filter
that lists only that kind; and, on a database without a check, the command to run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud.api.config import Settings
from cloud.api.main import create_app
from cloud.api.tokens import create_token
from cloud.archive import store
from cloud.store.migrate import migrate
from firmware_sim.simulation import Simulation
from tests.conftest import Services, create_database, drop_database
from tests.e2e.test_dashboard import ARTIFACTS, assert_clean, drive, facts
from tests.e2e.test_dashboard import playwright_core as playwright_core
from tests.integration.archive.conftest import END, START, STEP, build_corrupted
from tests.support.api_server import serve_api

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@dataclass
class Site:
    base: str
    engineer: str
    check_id: int
    true_tx: dict[str, str]      # meter -> the transformer it really hangs on
    true_phase: dict[str, int]   # single-phase meter -> its real phase
    moved: dict[str, str]        # meter -> the wrong transformer recorded for it
    rephased: dict[str, int]     # meter -> the wrong phase recorded for it
    unrecorded: str              # reports, but has no record
    findings: int
    regions: set[str | None]


def _build(dsn: str, tmp: Path) -> tuple[Simulation, dict[str, str], dict[str, int], str]:
    """The `corrupted` fixture's database (tests/integration/archive/conftest.py)."""
    sim, _grid_file, moved, rephased, unrecorded = build_corrupted(dsn, tmp)
    return sim, moved, rephased, unrecorded


def _api(dsn: str) -> Any:
    return create_app(Settings(dsn=dsn, rate_limit_per_s=1000.0, rate_limit_burst=1000))  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def site(services: Services, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    name = create_database(services, template_db, "t_dash_ar")
    dsn = services.dsn_for(name)
    try:
        sim, moved, rephased, unrecorded = _build(dsn, tmp_path_factory.mktemp("dashboard_archive"))
        with psycopg.connect(dsn, autocommit=True) as conn:
            check = store.run_check(conn, START, END, step_s=STEP)
            engineer = create_token(conn, "engineer", "dashboard archive engineer").secret
        cs = sim.grid.customers
        with serve_api(_api(dsn), "dashboard-archive-api") as base:
            yield Site(base, engineer, check.check_id, {c.meter_id: c.transformer_id for c in cs},
                       {c.meter_id: c.phase for c in cs if c.phases == 1 and c.phase is not None},
                       moved, rephased, unrecorded, len(check.findings),
                       {f.region_id for f in check.findings})
    finally:
        drop_database(services, name)


def _row(f: dict[str, Any], col: int, cell: str, table_text: str | None = None) -> list[str]:
    """The cells of the single table row whose cell `col` is `cell` (innerText: tab-separated)."""
    text = table_text if table_text is not None else f["text"]
    found = [[c.strip() for c in ln.split("\t")] for ln in text.splitlines()]
    found = [cells for cells in found if len(cells) > col and cells[col] == cell]
    assert len(found) == 1, f"no single row with {cell!r} in column {col} in:\n{text[:4000]}"
    return found[0]


def _clean_text(f: dict[str, Any]) -> None:
    assert "null" not in f["text"] and "undefined" not in f["text"] and "NaN" not in f["text"]


def test_archive_page_shows_the_check(playwright_core: Path, site: Site) -> None:
    steps = [
        {"do": "goto", "path": "/dashboard/", "name": "start"},
        {"do": "login", "token": site.engineer, "name": "map"},
        {"do": "hash", "hash": "#/archive", "page": "page-archive", "name": "archive", "collect": True,
         "screenshot": "archive"},
        {"do": "click", "selector": "table[data-testid=archive-kinds] a[href$='kind=not_in_archive']",
         "page": "page-archive", "hashPrefix": f"#/archive?check={site.check_id}&kind=not_in_archive",
         "name": "filtered", "collect": True, "screenshot": "archive-not-in-archive"},
        {"do": "hash", "hash": "#/map", "page": "page-map", "name": "away"},
        {"do": "hash", "hash": f"#/archive?check={site.check_id}", "page": "page-archive", "name": "pinned",
         "collect": True},
    ]
    result = drive(playwright_core, site.base, "archive", steps)
    assert_clean(result, site.base)
    f = facts(result, "archive")
    assert f["state"] == "ready"
    _clean_text(f)
    assert f"Archive check #{site.check_id}" in f["text"]
    assert f"Findings\n{site.findings}" in f["text"] and "Suspicions\n4" in f["text"]
    for t in (START, END):
        assert t.strftime("%Y-%m-%d %H:%M UTC") in f["text"]

    # the four suspicions, with the transformer and phase the data says
    suspected = set(site.moved) | set(site.rephased)
    assert len(suspected) == 4 and f["tables"]["archive-suspicions"] == 4
    # columns: rank, meter, kind, recorded tx, recorded phase, suggested tx, suggested phase,
    # confidence, r recorded vs best other, balance gain, status
    for mid, wrong in site.moved.items():
        cells = _row(f, 1, mid)
        assert cells[2] == "transformer" and cells[3] == wrong and cells[5] == site.true_tx[mid], cells
        assert cells[10] == "open" and " vs " in cells[8]
    for mid, wrong_phase in site.rephased.items():
        cells = _row(f, 1, mid)
        assert cells[2] == "phase" and cells[5] == site.true_tx[mid], cells
        assert (cells[4], cells[6]) == (f"L{wrong_phase + 1}", f"L{site.true_phase[mid] + 1}"), cells
    assert sorted(_row(f, 1, m)[0] for m in suspected) == ["1", "2", "3", "4"]

    # the findings: grouped by kind, the unrecorded meter among not_in_archive
    kinds = f["tables"]["archive-kinds"]
    assert kinds >= 1
    counted = sum(n for t, n in f["tables"].items() if t.startswith("archive-findings-"))
    assert counted == site.findings
    cells = _row(f, 0, site.unrecorded)
    assert cells[1] == "(none)" and cells[2] == "high" and cells[4].startswith("add the meter"), cells
    assert "readings: " in cells[3]
    assert f["tables"]["archive-findings-not_in_archive"] >= 1
    assert f["tables"]["archive-regions"] == len(site.regions)
    assert (ARTIFACTS / "archive" / "archive.png").stat().st_size > 10_000

    flt = facts(result, "filtered")
    _clean_text(flt)
    assert "Completeness findings: not_in_archive" in flt["text"]
    only = [t for t, n in flt["tables"].items() if t.startswith("archive-findings-")]
    assert only == ["archive-findings-not_in_archive"]
    assert site.unrecorded in flt["text"] and flt["tables"]["archive-suspicions"] == 4

    pinned = facts(result, "pinned")
    assert pinned["state"] == "ready" and f"Archive check #{site.check_id}" in pinned["text"]


def test_archive_page_without_a_check(playwright_core: Path, services: Services, template_db: str) -> None:
    name = create_database(services, template_db, "t_dash_ar0")
    dsn = services.dsn_for(name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
            engineer = create_token(conn, "engineer", "dashboard archive engineer").secret
        with serve_api(_api(dsn), "dashboard-archive-empty-api") as base:
            steps = [
                {"do": "goto", "path": "/dashboard/", "name": "start"},
                {"do": "login", "token": engineer, "name": "map"},
                {"do": "hash", "hash": "#/archive", "page": "page-archive", "name": "empty", "collect": True,
                 "screenshot": "archive-empty"},
            ]
            result = drive(playwright_core, base, "archive-empty", steps)
        assert_clean(result, base)
        f = facts(result, "empty")
        assert f["state"] == "ready"
        assert "No archive check yet: run `wattrail archive check`" in f["text"]
    finally:
        drop_database(services, name)
