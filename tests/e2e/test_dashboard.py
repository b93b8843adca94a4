"""The dashboard in a real browser: Debian's headless Chromium driven by playwright-core
(tests/e2e/dashboard_driver.cjs; `scripts/browser` installs both), against the real API on a
free port, reading a database with a small simulated grid analysed for real
(tests/e2e/dashboard_data.py). Screenshots go to test-artifacts/dashboard/<test>/.

Every page must load with no console error, no uncaught exception, no failed request and no
request off this server (the dashboard must work offline), and show the database's data: as
many transformer markers as transformers, as many suspect rows as suspects, charts with
points.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from cloud.api.config import Settings
from cloud.api.dashboard import CSP, STATIC_DIR
from cloud.api.main import create_app
from tests.conftest import REPO, Services, create_database, drop_database
from tests.e2e.dashboard_data import Dataset, build
from tests.support.api_server import serve_api

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

ARTIFACTS = REPO / "test-artifacts" / "dashboard"
DRIVER = Path(__file__).with_name("dashboard_driver.cjs")
CHROMIUM = os.environ.get("WATTRAIL_CHROMIUM", "/usr/bin/chromium")
PAGES = [("loss", "#/loss"), ("suspects", "#/suspects"), ("quality", "#/quality"), ("regional", "#/regional")]


@pytest.fixture(scope="session")
def playwright_core() -> Path:
    """scripts/browser install (idempotent): Debian's chromium + playwright-core in the cache."""
    res = subprocess.run([str(REPO / "scripts" / "browser"), "install"], capture_output=True, text=True,
                         check=False, timeout=900)
    if res.returncode != 0:
        pytest.fail(f"the browser tools could not be installed (scripts/browser install):\n{res.stderr}")
    path = Path(res.stdout.strip().splitlines()[-1]) / "node_modules" / "playwright-core"
    if not (path / "package.json").is_file() or shutil.which("node") is None:
        pytest.fail(f"scripts/browser reported success but {path} or node is missing")
    return path


@pytest.fixture(scope="module")
def dataset(services: Services, template_db: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataset]:
    name = create_database(services, template_db, "t_dash")
    dsn = services.dsn_for(name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            yield build(conn, dsn, tmp_path_factory.mktemp("dashboard"))
    finally:
        drop_database(services, name)


@pytest.fixture(scope="module")
def base_url(dataset: Dataset) -> Iterator[str]:
    """The API (create_app mounts the dashboard), uvicorn on a free port."""
    app = create_app(Settings(dsn=dataset.dsn, rate_limit_per_s=1000.0, rate_limit_burst=1000))  # type: ignore[call-arg]
    with serve_api(app, "dashboard-api") as base:
        yield base


def drive(playwright_core: Path, base: str, name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Run the steps in Chromium; the result says what each page showed and what went wrong."""
    out = ARTIFACTS / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    plan = {"playwright": str(playwright_core), "chromium": CHROMIUM, "base": base, "artifacts": str(out),
            "steps": steps}
    (out / "plan.json").write_text(json.dumps(plan, indent=1))
    try:
        res = subprocess.run(["node", str(DRIVER), str(out / "plan.json"), str(out / "result.json")],
                             capture_output=True, text=True, check=False, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the browser run did not finish in 240 s (screenshots in {out})")
    result_file = out / "result.json"
    if not result_file.is_file():
        pytest.fail(f"the browser driver wrote no result (exit {res.returncode}):\n{res.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(result_file.read_text())
    if result["error"]:
        facts = result.get("failureFacts") or {}
        pytest.fail(f"the browser run failed at {result['error']}\n"
                    f"page text: {facts.get('text', '')[:1500]}\n"
                    f"console: {result.get('console')}\nscreenshot: {result.get('failureScreenshot')}\n"
                    f"{res.stderr[-2000:]}")
    return result


def facts(result: dict[str, Any], step: str) -> dict[str, Any]:
    found = [s for s in result["steps"] if s["name"] == step]
    assert len(found) == 1, f"no single step {step!r} in {[s['name'] for s in result['steps']]}"
    f: dict[str, Any] = found[0]["facts"]
    return f


def assert_clean(result: dict[str, Any], base: str) -> None:
    errors = [c for c in result["console"] if c["type"] == "error"]
    assert errors == [], f"console errors: {errors}"
    assert result["pageErrors"] == [], f"uncaught exceptions: {result['pageErrors']}"
    assert result["failed"] == [], f"failed requests: {result['failed']}"
    assert result["badResponses"] == [], f"4xx/5xx answers: {result['badResponses']}"
    origin = urlsplit(base).netloc
    elsewhere = [u for u in result["requests"] if not u.startswith("data:") and urlsplit(u).netloc != origin]
    assert elsewhere == [], f"requests off this server (the dashboard must work offline): {elsewhere}"


def chart(f: dict[str, Any], testid: str) -> dict[str, Any]:
    found = [c for c in f["charts"] if c["testid"] == testid]
    assert len(found) == 1, f"chart {testid!r} not on the page: {f['charts']}"
    return found[0]


def _walk(token: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [
        {"do": "goto", "path": "/dashboard", "name": "start", "collect": True},
        {"do": "login", "token": token, "name": "map", "collect": True, "screenshot": "map"},
    ]
    for page, hash_ in PAGES:
        steps.append({"do": "hash", "hash": hash_, "page": f"page-{page}", "name": page, "collect": True,
                      "screenshot": page})
    steps.append({"do": "click", "selector": "table[data-testid=suspects-table] tbody tr:first-child a",
                  "page": "page-suspects", "hashPrefix": "#/suspects/", "name": "suspect", "collect": True,
                  "screenshot": "suspect-detail"})
    return steps


def test_engineer_sees_every_page_with_data(playwright_core: Path, base_url: str, dataset: Dataset) -> None:
    steps = _walk(dataset.tokens["engineer"])
    steps.insert(-1, {"do": "hash", "hash": "#/suspects", "page": "page-suspects", "name": "suspects-again"})
    result = drive(playwright_core, base_url, "engineer", steps)
    assert_clean(result, base_url)

    start = facts(result, "start")
    assert start["loginVisible"] and not start["storedToken"]

    m = facts(result, "map")
    assert m["state"] == "ready" and m["storedToken"]
    assert m["mapPanes"] == 1
    assert m["tileImages"] == 0  # no tile layer: nothing to fetch offline
    assert m["transformerMarkers"] == len(dataset.transformers)
    assert m["substationMarkers"] == len(dataset.regions)
    assert m["suspectMarkers"] == len(dataset.suspects)
    assert m["tables"]["worst-table"] == len(dataset.transformers)

    loss = facts(result, "loss")
    assert loss["tables"]["loss-table"] == len(dataset.transformers)
    c = chart(loss, "loss-chart")
    assert c["canvases"] >= 1 and c["width"] > 300
    assert c["points"] >= 2 * 48  # technical and NTL for the run's 48 hours at least

    sus = facts(result, "suspects")
    assert len(dataset.suspects) >= 1, "the simulated grid should yield suspects"
    assert sus["tables"]["suspects-table"] == len(dataset.suspects)
    assert dataset.suspects[0] in sus["text"]

    detail = facts(result, "suspect")
    assert detail["url"].endswith(f"#/suspects/{dataset.suspects[0]}")
    assert f"Meter {dataset.suspects[0]}" in detail["text"]
    assert "Evidence per indicator" in detail["text"]
    assert detail["tables"]["indicators-table"] >= 1
    assert chart(detail, "consumption-chart")["points"] >= 150  # two days of 15-min readings

    quality = facts(result, "quality")
    assert quality["tables"]["outages-table"] >= 1  # the simulated outage
    assert "Outages" in quality["text"]

    regional = facts(result, "regional")
    assert regional["tables"]["regions-table"] == len(dataset.regions)
    assert chart(regional, "daily-chart")["points"] >= 2
    assert chart(regional, "profile-chart")["points"] >= 96

    for name in ("map", "loss", "suspects", "quality", "regional", "suspect-detail"):
        assert (ARTIFACTS / "engineer" / f"{name}.png").stat().st_size > 10_000


def test_auditor_sees_chains_and_quarantine(playwright_core: Path, base_url: str, dataset: Dataset) -> None:
    steps = [
        {"do": "goto", "path": "/dashboard/", "name": "start"},
        {"do": "login", "token": dataset.tokens["auditor"], "name": "map", "collect": True},
        {"do": "hash", "hash": "#/audit", "page": "page-audit", "name": "audit", "collect": True,
         "screenshot": "audit"},
    ]
    result = drive(playwright_core, base_url, "auditor", steps)
    assert_clean(result, base_url)
    a = facts(result, "audit")
    assert a["state"] == "ready" and not a["navAuditHidden"]
    assert a["tables"]["chains-table"] == 1
    assert dataset.agent_id in a["text"]
    assert "6–7" in a["text"]  # the gap: seqs 6 and 7 never arrived
    assert a["tables"]["quarantine-table"] == dataset.quarantined
    assert "bad_signature" in a["text"]
    assert chart(a, "quarantine-chart")["points"] == 1


def test_engineer_is_refused_the_audit_trail(playwright_core: Path, base_url: str, dataset: Dataset) -> None:
    steps = [
        {"do": "goto", "path": "/dashboard/", "name": "start"},
        {"do": "login", "token": dataset.tokens["engineer"], "name": "map"},
        {"do": "hash", "hash": "#/audit", "page": "page-audit", "name": "audit", "collect": True,
         "screenshot": "audit-refused"},
    ]
    result = drive(playwright_core, base_url, "engineer-audit", steps)
    a = facts(result, "audit")
    assert a["denied"] == "1" and a["navAuditHidden"]
    assert "needs an auditor or admin token" in a["text"]
    # the one error is the browser's own log line for the API's 403
    refused = [(r["status"], urlsplit(r["url"]).path) for r in result["badResponses"]]
    assert refused == [(403, "/v1/audit/agents")]
    assert all("403" in c["text"] for c in result["console"] if c["type"] == "error")
    assert result["pageErrors"] == []


def test_unknown_token_is_refused_at_login(playwright_core: Path, base_url: str) -> None:
    steps = [
        {"do": "goto", "path": "/dashboard/", "name": "start"},
        {"do": "login", "token": "wtr_" + "x" * 43, "expectError": True, "name": "login", "collect": True,
         "screenshot": "login-refused"},
    ]
    result = drive(playwright_core, base_url, "bad-token", steps)
    f = facts(result, "login")
    assert f["loginVisible"] and not f["storedToken"]
    assert "does not know this token" in f["loginError"]
    assert [r["status"] for r in result["badResponses"]] == [401]


def test_dashboard_is_served_offline_with_a_strict_policy(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        r = client.get("/dashboard")
        assert r.status_code == 307 and r.headers["location"] == "/dashboard/"
        index = client.get("/dashboard/")
        assert index.status_code == 200 and "text/html" in index.headers["content-type"]
        assert index.headers["content-security-policy"] == CSP
        assert index.headers["x-content-type-options"] == "nosniff"
        assert "http://" not in index.text and "https://" not in index.text  # nothing from a CDN
        for asset in ("vendor/leaflet/leaflet.js", "vendor/uplot/uPlot.iife.min.js", "js/app.js",
                      "js/pages/map.js", "css/dashboard.css"):
            got = client.get(f"/dashboard/{asset}")
            assert got.status_code == 200, asset
            assert got.headers["content-security-policy"] == CSP, asset
        assert client.get("/dashboard/js/missing.js").status_code == 404
        assert "/dashboard" not in client.get("/openapi.json").json()["paths"]
    for lib in ("leaflet", "uplot"):
        assert (STATIC_DIR / "vendor" / lib / "LICENSE").stat().st_size > 500
