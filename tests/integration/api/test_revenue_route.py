"""GET /v1/revenue against a real TimescaleDB and the real app under uvicorn: a month billed
(tests/integration/api/revenue_seed.py), asked once before any analytics run (losses missing,
the note with the command) and then after the real analytics batch, with the numbers checked
against the readings and the stored determinants and losses; 404s and 422s."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from cloud.api.config import Settings
from cloud.api.main import create_app
from cloud.api.tokens import create_token
from tests.conftest import Services, create_database, drop_database
from tests.integration.api.conftest import auth
from tests.integration.api.revenue_seed import PERIOD, RevenueData, analyse, build
from tests.support.api_server import serve_api

pytestmark = pytest.mark.integration


@dataclass
class Served:
    dsn: str
    data: RevenueData
    early: dict[str, Any]  # the report before the analytics ran
    client: httpx.Client


@pytest.fixture(scope="module")
def served(services: Services, template_db: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    name = create_database(services, template_db, "t_rev_api")
    dsn = services.dsn_for(name)
    try:
        with psycopg.connect(dsn) as conn:
            data = build(conn, tmp_path_factory.mktemp("revenue_api"))
            secret = create_token(conn, "engineer", "revenue engineer").secret
            conn.commit()
            app = create_app(Settings(dsn=dsn, rate_limit_per_s=10_000.0, rate_limit_burst=10_000))  # type: ignore[call-arg]
            with serve_api(app, name="revenue-api") as base, httpx.Client(
                    base_url=base, timeout=60, headers=auth(secret)) as client:
                early = client.get("/v1/revenue", params={"period": PERIOD})
                assert early.status_code == 200, early.text[:500]
                analyse(conn, data)
                yield Served(dsn, data, early.json(), client)
    finally:
        drop_database(services, name)


def _problem(res: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert res.status_code == status, res.text[:500]
    assert res.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = res.json()
    assert body["type"] == f"urn:wattrail:problem:{kind}", body
    return body


def _row(body: dict[str, Any], level: str, entity: str) -> dict[str, Any]:
    found = [r for r in body["rows"] if r["level"] == level and r["entity_id"] == entity]
    assert len(found) == 1, body["rows"]
    return found[0]


def test_before_any_analytics_run_losses_are_missing_and_the_note_says_the_command(
        served: Served) -> None:
    early = served.early
    assert early["analysis_run_id"] is None
    assert early["billing_run"]["run_id"] == served.data.billing_run_id
    assert any("wattrail analyze --from" in n for n in early["notes"])
    for r in early["rows"]:
        assert r["energy_in_kwh"] is None and r["ntl_kwh"] is None
        assert r["technical_kwh"] is None and r["revenue_at_risk_ntl"] is None
        assert r["billed_kwh"] > 0  # what was billed is known without the analytics


def test_report_matches_the_readings_determinants_and_losses(served: Served) -> None:
    d = served.data
    res = served.client.get("/v1/revenue", params={"period": PERIOD})
    assert res.status_code == 200, res.text[:500]
    body = res.json()
    assert body["period"] == PERIOD and body["currency"] == "EUR"
    assert body["billing_run"] == {**body["billing_run"], "run_id": d.billing_run_id,
                                   "vee_run_id": d.vee_run_id, "customers": 6}
    assert body["analysis_run_id"] == d.analysis_run_id and body["notes"] == []
    assert [r["level"] for r in body["rows"]] == ["region", "feeder", "transformer", "transformer"]
    with psycopg.connect(served.dsn) as conn:
        amounts = dict(conn.execute(
            "SELECT m.transformer_id, sum(b.amount) FROM billing_determinants b JOIN meters m"
            " USING (meter_id) WHERE b.run_id = %s GROUP BY 1", [d.billing_run_id]).fetchall())
        loss = {e: (ntl, sig) for e, ntl, sig in conn.execute(
            "SELECT entity_id, ntl_wh, ntl_sigma_wh FROM analysis_loss WHERE run_id = %s AND"
            " level = 'transformer'", [d.analysis_run_id])}
    risks = []
    for tx in d.transformers:
        r = _row(body, "transformer", tx)
        assert r["billed_kwh"] == pytest.approx(d.billed_kwh(tx), rel=1e-9)
        assert r["amount_billed"] == pytest.approx(amounts[tx], rel=1e-9)
        assert r["price_per_kwh"] == pytest.approx(amounts[tx] / d.billed_kwh(tx), rel=1e-9)
        assert r["not_billable"] == 0
        if tx == d.dark:  # no input reading: missing, never 0
            assert r["energy_in_kwh"] is None and r["metered_out_kwh"] is None
            assert r["low_confidence"] is True
            continue
        ntl, sig = loss[tx]
        assert r["energy_in_kwh"] == pytest.approx(d.billed_kwh(tx) * 1.05, rel=2e-3)
        assert r["ntl_kwh"] == pytest.approx(ntl / 1000) and r["ntl_sigma_kwh"] == pytest.approx(sig / 1000)
        assert r["revenue_at_risk_ntl"] == pytest.approx(max(ntl / 1000, 0) * r["price_per_kwh"])
        risks.append(r["revenue_at_risk_ntl"])
    feeder = _row(body, "feeder", d.feeder)
    assert feeder["billed_kwh"] == pytest.approx(sum(d.billed_kwh(t) for t in d.transformers))
    assert feeder["revenue_at_risk_ntl"] == pytest.approx(sum(risks))
    assert feeder["customers"] == 6
    # meter 1's two like-day days rest on estimates: a share, and revenue a customer could dispute
    region = _row(body, "region", d.region)
    assert 0 < region["estimated_share"] < 0.1 and region["revenue_at_risk_estimates"] > 0
    special = body["special"]
    assert [s["meter_id"] for s in special] == [d.special_meter]
    assert set(special[0]) >= {"class", "tariffs", "amount", "vee_status", "contract_kva"}


def test_level_keeps_one_level_and_pinned_runs_answer_the_same(served: Served) -> None:
    d = served.data
    q = {"period": PERIOD, "billing_run": d.billing_run_id, "analysis_run": d.analysis_run_id}
    full = served.client.get("/v1/revenue", params=q).json()
    only = served.client.get("/v1/revenue", params={**q, "level": "transformer"}).json()
    assert [r["entity_id"] for r in only["rows"]] == d.transformers
    assert only["rows"] == [r for r in full["rows"] if r["level"] == "transformer"]
    assert only["special"] == full["special"]


@pytest.mark.parametrize("params", [{"period": "2026-13"}, {"period": "2026-3"}, {},
                                    {"period": PERIOD, "level": "meter"},
                                    {"period": PERIOD, "billing_run": 0}])
def test_bad_parameters_are_422(served: Served, params: dict[str, Any]) -> None:
    _problem(served.client.get("/v1/revenue", params=params), 422, "validation")


def test_a_billing_run_of_another_period_is_422(served: Served) -> None:
    res = served.client.get("/v1/revenue", params={"period": "2026-02",
                                                   "billing_run": served.data.billing_run_id})
    assert "is of 2026-03" in _problem(res, 422, "period-mismatch")["detail"]


def test_no_billing_run_is_404_with_the_command(served: Served) -> None:
    body = _problem(served.client.get("/v1/revenue", params={"period": "2025-07"}), 404,
                    "no-billing-run")
    assert "wattrail billing determinants --period 2025-07" in body["detail"]
    _problem(served.client.get("/v1/revenue", params={"period": PERIOD, "billing_run": 999_999}),
             404, "not-found")
    _problem(served.client.get("/v1/revenue", params={"period": PERIOD, "analysis_run": 999_999}),
             404, "not-found")


def test_no_token_is_401(served: Served) -> None:
    res = httpx.get(f"{served.client.base_url}/v1/revenue", params={"period": PERIOD}, timeout=30)
    assert res.status_code == 401


def test_a_transformer_without_input_has_no_loss(served: Served) -> None:
    body = served.client.get("/v1/revenue", params={"period": PERIOD}).json()
    r = _row(body, "transformer", served.data.dark)
    assert r["ntl_kwh"] is None and r["technical_kwh"] is None
    assert r["revenue_at_risk_ntl"] is None
