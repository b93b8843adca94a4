"""The dashboard's Revenue and Meter VEE pages in a real browser (Chromium driven by
playwright-core, as tests/e2e/test_dashboard.py does, with its driver and checks), against the
real API on a free port, reading a database billed and analysed for real
(tests/integration/api/revenue_seed.py: 6 customers on 2 transformers in Europe/Berlin,
2026-03, one transformer's balance meter silent) plus a manual edit made through the API.

The pages must load cleanly (no console error, no failed or off-server request) and show what
the database holds: the transformer ids with the billed energy computed from the readings, "–"
for the silent transformer's energy in, the special customer; a meter's 31 local days with the
estimated one, its LINEAR intervals at their local wall-clock times with raw "missing", the
manual edit with who and why, and a like-day estimate for the meter that lost two days.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from cloud.api.config import Settings
from cloud.api.main import create_app
from cloud.api.tokens import create_token
from tests.conftest import Services, create_database, drop_database
from tests.e2e.test_dashboard import ARTIFACTS, assert_clean, drive, facts
from tests.e2e.test_dashboard import playwright_core as playwright_core
from tests.integration.api.conftest import auth
from tests.integration.api.revenue_seed import PERIOD, RevenueData, analyse, build
from tests.support.api_server import serve_api

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

EDIT = {"bucket": "2026-03-02T12:00:00+01:00", "value_kwh": 0.3, "reason": "customer read the register"}
EDITOR = "ops alice"


@dataclass
class Site:
    base: str
    data: RevenueData
    engineer: str


@pytest.fixture(scope="module")
def site(services: Services, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    name = create_database(services, template_db, "t_dash_mdm")
    dsn = services.dsn_for(name)
    try:
        with psycopg.connect(dsn) as conn:
            data = build(conn, tmp_path_factory.mktemp("dashboard_mdm"))
            analyse(conn, data)
            engineer = create_token(conn, "engineer", "dashboard mdm engineer").secret
            admin = create_token(conn, "admin", EDITOR).secret
            conn.commit()
        app = create_app(Settings(dsn=dsn, rate_limit_per_s=1000.0, rate_limit_burst=1000))  # type: ignore[call-arg]
        with serve_api(app, "dashboard-mdm-api") as base:
            res = httpx.post(f"{base}/v1/vee/meters/{data.meters[3]}/edits", json=EDIT,
                             headers=auth(admin), timeout=30)
            assert res.status_code == 201, res.text[:500]
            yield Site(base, data, engineer)
    finally:
        drop_database(services, name)


def _line(f: dict[str, Any], first_cell: str) -> list[str]:
    """The cells of the table row whose first cell is `first_cell` (innerText: tab-separated)."""
    found = [ln.split("\t") for ln in f["text"].splitlines() if ln.split("\t")[0].strip() == first_cell]
    assert len(found) == 1, f"no single row {first_cell!r} in:\n{f['text'][:3000]}"
    return [c.strip() for c in found[0]]


def test_revenue_page_shows_the_report(playwright_core: Path, site: Site) -> None:
    d = site.data
    steps = [
        {"do": "goto", "path": "/dashboard/", "name": "start"},
        {"do": "login", "token": site.engineer, "name": "map"},
        {"do": "hash", "hash": "#/revenue", "page": "page-revenue", "name": "revenue", "collect": True,
         "screenshot": "revenue"},
    ]
    result = drive(playwright_core, site.base, "revenue", steps)
    assert_clean(result, site.base)
    f = facts(result, "revenue")
    assert f["state"] == "ready"
    assert f["tables"]["revenue-transformer"] == 2
    assert f["tables"]["revenue-feeder"] == 1 and f["tables"]["revenue-region"] == 1
    assert f"Revenue {PERIOD}" in f["text"] and f"Analytics run\n#{d.analysis_run_id}" in f["text"]
    lit = next(t for t in d.transformers if t != d.dark)
    # columns: id, customers, energy in, billed, technical, NTL, estimated, amount, at risk x2, completeness
    row = _line(f, lit)
    assert row[3] == f"{d.billed_kwh(lit):,.1f} kWh"  # computed from the readings
    assert row[2].endswith(" kWh") and row[2] != "–" and "±" in row[5]
    dark = _line(f, d.dark)
    assert dark[3] == f"{d.billed_kwh(d.dark):,.1f} kWh"
    # the balance meter sent nothing: energy in, losses and revenue at risk from NTL are
    # missing, not 0 (the API says 0 for the losses: see test_revenue_route's xfail)
    assert (dark[2], dark[4], dark[5], dark[8]) == ("–", "–", "–", "–"), dark
    assert dark[10].endswith("⚠")  # low confidence
    assert f["tables"]["special-table"] == 1 and d.special_meter in f["text"]
    assert "null" not in f["text"] and "undefined" not in f["text"] and "NaN" not in f["text"]
    assert (ARTIFACTS / "revenue" / "revenue.png").stat().st_size > 10_000


def test_meter_vee_page_shows_days_and_intervals(playwright_core: Path, site: Site) -> None:
    d = site.data
    m0, m1, m3 = d.meters[0], d.meters[1], d.meters[3]
    steps = [
        {"do": "goto", "path": "/dashboard/", "name": "start"},
        {"do": "login", "token": site.engineer, "name": "map"},
        {"do": "hash", "hash": "#/vee", "page": "page-vee", "name": "empty", "collect": True},
        {"do": "hash", "hash": "#/revenue", "page": "page-revenue", "name": "r1"},
        {"do": "hash", "hash": f"#/vee/{m0}?day=2026-03-02", "page": "page-vee", "name": "linear",
         "collect": True, "screenshot": "vee-linear"},
        {"do": "hash", "hash": "#/revenue", "page": "page-revenue", "name": "r2"},
        {"do": "hash", "hash": f"#/vee/{m1}", "page": "page-vee", "name": "like-day", "collect": True,
         "screenshot": "vee-like-day"},
        {"do": "hash", "hash": "#/revenue", "page": "page-revenue", "name": "r3"},
        {"do": "hash", "hash": f"#/vee/{m3}?day=2026-03-02", "page": "page-vee", "name": "edit",
         "collect": True, "screenshot": "vee-edit"},
        {"do": "click", "selector": "table[data-testid=vee-days-table] tbody tr:nth-child(5) a",
         "page": "page-vee", "hashPrefix": f"#/vee/{m3}?run={d.vee_run_id}&day=2026-03-05",
         "name": "clicked", "collect": True},
    ]
    result = drive(playwright_core, site.base, "vee", steps)
    assert_clean(result, site.base)
    assert "Give a customer meter's id" in facts(result, "empty")["text"]

    lin = facts(result, "linear")
    assert lin["tables"]["vee-days-table"] == 31  # the local month
    day = _line(lin, "2026-03-02")
    assert day[1] == "estimated" and "missing" in day[2]
    assert "Intervals of 2026-03-02 (local)" in lin["text"]
    assert lin["tables"]["vee-intervals-table"] == 2  # the two intervals around the lost reading
    for t in ("00:45 +01:00", "01:00 +01:00"):
        cells = _line(lin, t)
        assert cells[1] == f"VEE run #{d.vee_run_id}" and cells[2] == "missing"  # raw: missing
        assert cells[3] == "0.250 kWh" and cells[5] == "linear" and cells[6] == "✓ in force"

    like = facts(result, "like-day")
    # no day asked: the first day that is not valid, the one the lost readings begin on
    assert "Intervals of 2026-03-06 (local)" in like["text"]
    assert like["tables"]["vee-intervals-table"] >= 1
    assert "like_day" in like["text"].lower()

    edit = facts(result, "edit")
    cells = _line(edit, "12:00 +01:00")
    assert cells[1].startswith("manual edit #") and cells[3] == "0.300 kWh" and cells[5] == "manual"
    assert cells[7] == EDITOR and cells[8] == EDIT["reason"]
    assert f"{m3} in VEE run #{d.vee_run_id}" in edit["text"]

    for step in ("linear", "like-day", "edit"):
        text = facts(result, step)["text"]
        assert "null" not in text and "undefined" not in text and "NaN" not in text, step

    clicked = facts(result, "clicked")
    assert clicked["url"].endswith("day=2026-03-05")
    assert "Intervals of 2026-03-05 (local)" in clicked["text"]
    assert "post-VEE equals raw for all of them" in clicked["text"]
