"""The meter data management routes (VEE, billing, tariffs) against a real TimescaleDB and the
real app under uvicorn: a month of 15-minute register readings in Europe/Berlin (one missing
reading, so VEE has something to estimate), two tariff versions and a tariff with no version,
then `run_billing`. Reads, 404s and 422s, roles, and a manual edit made through the API that the
next `run_vee` / `run_billing` (called here directly) apply as method `manual`.

The database is one per module: the read tests pin the first runs' ids and run first; the edit
tests at the end make new runs."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from cloud.api.config import Settings
from cloud.api.main import create_app
from cloud.api.routes.vee import raw_from_readings
from cloud.api.tokens import create_token
from cloud.mdm.billing import NO_TARIFF, run_billing
from cloud.mdm.calendar import month_period, zone
from cloud.mdm.run import run_vee
from cloud.store import mdm_sql
from cloud.store.migrate import migrate
from cloud.store.topology import import_topology
from firmware_sim.grid import generate_grid
from firmware_sim.grid_file import write_grid
from protocols.reading import Quality
from tests.conftest import Services, create_database, drop_database
from tests.integration.api.conftest import auth
from tests.support.api_server import serve_api

pytestmark = pytest.mark.integration

TZ = "Europe/Berlin"
PERIOD = "2026-03"  # 31 local days, 2026-03-29 has 23 hours
STEP = 900
MISSING_K = 100  # meter 0 lacks the reading closing interval 99: intervals 99 and 100 go missing
V1 = {"tariff_id": "RES-TOU", "class": "residential", "currency": "EUR", "valid_from": "2026-01-01",
      "valid_to": "2026-03-14",
      "periods": [{"name": "peak", "day_types": ["weekday"], "from": "17:00", "to": "21:00"}],
      "default_period": "offpeak", "energy_price": {"peak": 0.40, "offpeak": 0.20}}
V2 = {**V1, "valid_from": "2026-03-15", "valid_to": None, "energy_price": {"peak": 0.50, "offpeak": 0.25}}


@dataclass
class Mdm:
    dsn: str
    base: str
    meters: list[str]  # customer meters, by id
    customers: dict[str, str]  # meter -> customer
    balance_meter: str
    vee_run: int
    billing_run: int
    engineer: dict[str, str]
    admin: dict[str, str]
    admin_name: str


def _load(conn: psycopg.Connection[Any], meters: list[str]) -> None:
    """A reading every quarter hour (and the closing one), 0.25 + 0.01·i kWh per interval for
    meter i; meter 0 misses one reading."""
    p = month_period(PERIOD, zone(TZ))
    t0, n = int(p.start.timestamp()), p.intervals(STEP)
    with conn.cursor() as cur, cur.copy(
            "COPY readings (meter_id, ts, import_wh, export_wh, quality, provenance, import_batch)"
            " FROM STDIN") as cp:
        for i, m in enumerate(meters):
            for k in range(n + 1):
                if i == 0 and k == MISSING_K:
                    continue
                cp.write_row((m, datetime.fromtimestamp(t0 + k * STEP, UTC),
                              1_000_000.0 + k * (250.0 + 10.0 * i), 0.0, 0, "imported", 1))
    conn.commit()


@pytest.fixture(scope="module")
def mdm(services: Services, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mdm]:
    name = create_database(services, template_db, "t_mdm_api")
    dsn = services.dsn_for(name)
    tmp: Path = tmp_path_factory.mktemp("mdm_api")
    try:
        with psycopg.connect(dsn) as conn:
            migrate(conn)
            write_grid(generate_grid(seed=11, meters=6, feeders=1, transformers=2), tmp / "grid.json")
            import_topology(conn, tmp / "grid.json")
            conn.execute(mdm_sql.SET_TIME_ZONE_WHERE_NONE, {"tz": TZ})
            meters = [r[0] for r in conn.execute(
                "SELECT meter_id FROM meters WHERE kind = 'customer' ORDER BY meter_id")]
            customers = dict(conn.execute("SELECT meter_id, customer_id FROM meters "
                                          "WHERE kind = 'customer'").fetchall())
            balance = conn.execute("SELECT meter_id FROM meters WHERE kind <> 'customer' "
                                   "ORDER BY meter_id LIMIT 1").fetchone()
            assert balance is not None
            _load(conn, meters)
            for doc in (V1, V2):
                conn.execute(mdm_sql.UPSERT_TARIFF, {
                    "tariff_id": doc["tariff_id"], "valid_from": date.fromisoformat(str(doc["valid_from"])),
                    "valid_to": date.fromisoformat(str(doc["valid_to"])) if doc["valid_to"] else None,
                    "class": "residential", "currency": "EUR", "doc": json.dumps(doc)})
            for m, tariff, since in ((meters[0], "RES-TOU", date(2026, 1, 1)),
                                     (meters[1], "GHOST", date(2026, 3, 1))):
                conn.execute(mdm_sql.UPSERT_ASSIGNMENT, {"customer_id": customers[m], "tariff_id": tariff,
                                                         "valid_from": since, "valid_to": None})
            conn.commit()
            billed = run_billing(conn, PERIOD)
            engineer = create_token(conn, "engineer", "mdm engineer").secret
            admin = create_token(conn, "admin", "ops alice")
            conn.commit()
        app = create_app(Settings(dsn=dsn, rate_limit_per_s=10_000.0, rate_limit_burst=10_000))  # type: ignore[call-arg]
        with serve_api(app, name="mdm-api") as base:
            yield Mdm(dsn, base, meters, customers, str(balance[0]), billed.vee.run_id, billed.run_id,
                      auth(engineer), auth(admin.secret), admin.info.name)
    finally:
        drop_database(services, name)


@pytest.fixture(scope="module")
def api(mdm: Mdm) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=mdm.base, timeout=30) as c:
        yield c


def _problem(res: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    assert res.status_code == status, res.text[:500]
    assert res.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = res.json()
    if kind is not None:
        assert body["type"] == f"urn:wattrail:problem:{kind}", body
    return body


def _all_pages(api: httpx.Client, url: str, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        res = api.get(url, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert res.status_code == 200, res.text[:500]
        body = res.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the cursor never ended")


# --- VEE runs


def test_vee_runs_list_and_detail(api: httpx.Client, mdm: Mdm) -> None:
    runs = api.get("/v1/vee/runs", headers=mdm.engineer).json()
    assert [r["run_id"] for r in runs["items"]] == [mdm.vee_run] and runs["next_cursor"] is None
    assert runs["items"][0]["meters"] == 6 and runs["items"][0]["finished_at"] is not None
    p = month_period(PERIOD, zone(TZ))
    assert datetime.fromisoformat(runs["items"][0]["period_start"]) == p.start
    detail = api.get(f"/v1/vee/runs/{mdm.vee_run}", headers=mdm.engineer).json()
    rules = {r["rule"]: r for r in detail["rules"]}
    assert [r["rule"] for r in detail["rules"]][:3] == ["missing", "gap", "negative"]  # Rule order
    assert rules["missing"]["intervals_failed"] == 2 and rules["missing"]["bit"] == 1
    assert rules["gap"]["intervals_failed"] == 0
    assert sum(detail["meter_days"].values()) == 6 * 31
    assert detail["meter_days"]["estimated"] >= 1  # meter 0's day with the interpolated pair
    assert "max_interpolate_s" in detail["params"] and detail["seconds"]["total"] > 0
    text = api.get("/v1/vee/runs", params={"format": "csv"}, headers=mdm.engineer)
    assert text.headers["content-type"].startswith("text/csv")
    lines = text.text.splitlines()
    assert lines[0].split(",")[:2] == ["run_id", "period_start"] and len(lines) == 2


def test_vee_run_problems(api: httpx.Client, mdm: Mdm) -> None:
    _problem(api.get("/v1/vee/runs/987654", headers=mdm.engineer), 404, "not-found")
    _problem(api.get("/v1/vee/runs/0", headers=mdm.engineer), 422, "validation")
    _problem(api.get("/v1/vee/runs/abc", headers=mdm.engineer), 422, "validation")
    _problem(api.get("/v1/vee/runs", params={"limit": 5000}, headers=mdm.engineer), 422, "limit-too-large")
    _problem(api.get("/v1/vee/runs", params={"cursor": "junk"}, headers=mdm.engineer), 400, "bad-cursor")
    _problem(api.get("/v1/vee/runs", params={"run": 1}, headers=mdm.engineer), 422, "unknown-parameter")
    _problem(api.get("/v1/vee/runs"), 401, "unauthenticated")


def test_meter_days_page_through_the_local_month(api: httpx.Client, mdm: Mdm) -> None:
    m0 = mdm.meters[0]
    days = _all_pages(api, f"/v1/vee/meters/{m0}/days", mdm.engineer, run=mdm.vee_run, limit=10)
    assert [d["day"] for d in days] == [(date(2026, 3, 1) + timedelta(days=i)).isoformat() for i in range(31)]
    by_day = {d["day"]: d for d in days}
    assert by_day["2026-03-29"]["intervals"] == 92 and by_day["2026-03-28"]["intervals"] == 96
    # interval 100 of the month: 01:00 CET on 2 March, so the missing pair is in that day
    hit = by_day["2026-03-02"]
    assert hit["status"] == "estimated" and "missing" in hit["rules_failed"] and hit["estimated"] == 2
    calm = by_day["2026-03-03"]
    assert (calm["status"], calm["rules_failed"], calm["estimated"], calm["missing"]) == ("valid", [], 0, 0)
    default = api.get(f"/v1/vee/meters/{m0}/days", headers=mdm.engineer).json()  # the latest run
    assert default["items"][0]["run_id"] == mdm.vee_run
    csv_res = api.get(f"/v1/vee/meters/{m0}/days", params={"format": "csv", "limit": 31},
                      headers=mdm.engineer)
    rows = list(csv.DictReader(csv_res.text.splitlines()))
    assert len(rows) == 31 and rows[1]["status"] == "estimated" and rows[1]["rules_failed"] == '["missing"]'


def test_meter_days_problems(api: httpx.Client, mdm: Mdm) -> None:
    _problem(api.get("/v1/vee/meters/NOPE/days", headers=mdm.engineer), 404, "not-found")
    _problem(api.get(f"/v1/vee/meters/{mdm.meters[0]}/days", params={"run": 987654},
                     headers=mdm.engineer), 404, "not-found")
    body = _problem(api.get(f"/v1/vee/meters/{mdm.balance_meter}/days", headers=mdm.engineer), 404)
    assert "not in VEE run" in body["detail"]
    _problem(api.get(f"/v1/vee/meters/{mdm.meters[0]}/days", params={"run": 0}, headers=mdm.engineer), 422)
    _problem(api.get(f"/v1/vee/meters/{mdm.meters[0]}/days", params={"run": "latest"},
                     headers=mdm.engineer), 422)


def test_meter_intervals_show_raw_beside_post_vee(api: httpx.Client, mdm: Mdm) -> None:
    m0 = mdm.meters[0]
    res = api.get(f"/v1/vee/meters/{m0}/intervals",
                  params={"from": "2026-03-01T00:00:00+01:00", "to": "2026-04-01T00:00:00+02:00"},
                  headers=mdm.engineer)
    assert res.status_code == 200, res.text
    items = res.json()["items"]
    p = month_period(PERIOD, zone(TZ))
    assert [datetime.fromisoformat(i["bucket"]) for i in items] == [
        p.start + timedelta(seconds=STEP * k) for k in (MISSING_K - 1, MISSING_K)]
    for i in items:
        assert (i["source"], i["version"], i["run_id"], i["method"]) == (
            "vee", mdm.vee_run, mdm.vee_run, "linear")
        assert i["raw_kwh"] is None and i["value_kwh"] == pytest.approx(0.25)
        assert i["rules"] == ["missing"] and i["flags"] == 1 and i["in_force"] is True
        assert i["edited_by"] is None and i["reason"] is None
        assert i["bucket_local"].endswith("+01:00")
        assert datetime.fromisoformat(i["bucket_local"]) == datetime.fromisoformat(i["bucket"])
    # a range without touched intervals is an empty page, not a 404
    quiet = api.get(f"/v1/vee/meters/{mdm.meters[3]}/intervals",
                    params={"from": "2026-03-01", "to": "2026-03-31"}, headers=mdm.engineer)
    assert quiet.status_code == 200 and quiet.json() == {"items": [], "next_cursor": None}


def test_meter_intervals_problems(api: httpx.Client, mdm: Mdm) -> None:
    url = f"/v1/vee/meters/{mdm.meters[0]}/intervals"
    _problem(api.get(url, params={"from": "2026-03-01"}, headers=mdm.engineer), 422, "validation")
    _problem(api.get(url, params={"from": "2026-03-02", "to": "2026-03-01"}, headers=mdm.engineer),
             422, "bad-time-range")
    _problem(api.get(url, params={"from": "2020-01-01", "to": "2026-03-01"}, headers=mdm.engineer),
             422, "range-too-long")
    _problem(api.get(url, params={"from": "1773000000", "to": "2026-03-01"}, headers=mdm.engineer), 422)
    _problem(api.get(url, params={"start": "2026-03-01", "end": "2026-03-02"}, headers=mdm.engineer), 422)
    _problem(api.get("/v1/vee/meters/NOPE/intervals", params={"from": "2026-03-01", "to": "2026-03-02"},
                     headers=mdm.engineer), 404, "not-found")


# --- billing and tariffs


def test_billing_runs_and_paged_determinants(api: httpx.Client, mdm: Mdm) -> None:
    runs = api.get("/v1/billing/runs", params={"period": PERIOD}, headers=mdm.engineer).json()["items"]
    assert [(r["run_id"], r["vee_run_id"], r["period"], r["customers"]) for r in runs] == [
        (mdm.billing_run, mdm.vee_run, PERIOD, 6)]
    assert api.get("/v1/billing/runs", params={"period": "2025-12"},
                   headers=mdm.engineer).json()["items"] == []
    url = f"/v1/billing/runs/{mdm.billing_run}/determinants"
    whole = api.get(url, headers=mdm.engineer).json()
    assert whole["next_cursor"] is None
    paged = _all_pages(api, url, mdm.engineer, limit=2)
    assert paged == whole["items"]
    keys = [(d["customer_id"], d["first_day"]) for d in paged]
    assert keys == sorted(keys) and len(set(keys)) == len(keys) == 7  # customer 0: two versions
    c0 = [d for d in paged if d["customer_id"] == mdm.customers[mdm.meters[0]]]
    assert [(d["tariff_id"], d["tariff_from"], d["first_day"], d["last_day"]) for d in c0] == [
        ("RES-TOU", "2026-01-01", "2026-03-01", "2026-03-14"),
        ("RES-TOU", "2026-03-15", "2026-03-15", "2026-03-31")]
    one = api.get(url, params={"customer_id": mdm.customers[mdm.meters[2]]}, headers=mdm.engineer).json()
    assert [d["customer_id"] for d in one["items"]] == [mdm.customers[mdm.meters[2]]]
    assert one["items"][0]["tariff_id"] == "archive-flat" and one["items"][0]["amount"] > 0
    text = api.get(url, params={"format": "csv"}, headers=mdm.engineer)
    rows = list(csv.DictReader(text.text.splitlines()))
    assert len(rows) == 7 and json.loads(rows[0]["kwh_by_period"])
    ghost = next(r for r in rows if r["customer_id"] == mdm.customers[mdm.meters[1]])
    assert ghost["tariff_id"] == NO_TARIFF and ghost["amount"] == ""  # reported, not billed


def test_billing_problems(api: httpx.Client, mdm: Mdm) -> None:
    _problem(api.get("/v1/billing/runs/987654/determinants", headers=mdm.engineer), 404, "not-found")
    _problem(api.get("/v1/billing/runs", params={"period": "2026-3"}, headers=mdm.engineer), 422)
    _problem(api.get("/v1/billing/runs", params={"period": "2026-13"}, headers=mdm.engineer), 422)
    url = f"/v1/billing/runs/{mdm.billing_run}/determinants"
    first = api.get(url, params={"limit": 1}, headers=mdm.engineer).json()
    # a cursor of another listing is refused, not misread
    for other in ("/v1/tariffs", "/v1/vee/runs", f"/v1/customers/{mdm.customers[mdm.meters[0]]}/tariffs"):
        _problem(api.get(other, params={"cursor": first["next_cursor"]}, headers=mdm.engineer),
                 400, "bad-cursor")
    _problem(api.get(url, params={"customer_id": ""}, headers=mdm.engineer), 422)


def test_a_customers_determinants_for_a_period(api: httpx.Client, mdm: Mdm) -> None:
    c0 = mdm.customers[mdm.meters[0]]
    bill = api.get(f"/v1/billing/customers/{c0}/determinants", params={"period": PERIOD},
                   headers=mdm.engineer).json()
    assert bill["run"]["run_id"] == mdm.billing_run and bill["period"] == PERIOD
    assert [line["tariff_from"] for line in bill["lines"]] == ["2026-01-01", "2026-03-15"]
    assert bill["amount"] == pytest.approx(sum(line["amount"] for line in bill["lines"]))
    assert bill["currency"] == "EUR"
    first, second = bill["lines"]
    assert first["kwh_by_period"]["offpeak"] * 0.20 + first["kwh_by_period"]["peak"] * 0.40 == \
        pytest.approx(first["amount"])
    assert second["kwh_by_period"]["offpeak"] * 0.25 + second["kwh_by_period"]["peak"] * 0.50 == \
        pytest.approx(second["amount"])
    ghost = api.get(f"/v1/billing/customers/{mdm.customers[mdm.meters[1]]}/determinants",
                    params={"period": PERIOD}, headers=mdm.engineer).json()
    assert [line["tariff_id"] for line in ghost["lines"]] == [NO_TARIFF] and ghost["amount"] is None
    url = f"/v1/billing/customers/{c0}/determinants"
    _problem(api.get(url, params={"period": "2025-01"}, headers=mdm.engineer), 404, "no-billing-run")
    _problem(api.get(url, params={"period": "March"}, headers=mdm.engineer), 422, "validation")
    _problem(api.get(url, headers=mdm.engineer), 422, "validation")
    _problem(api.get("/v1/billing/customers/NOPE/determinants", params={"period": PERIOD},
                     headers=mdm.engineer), 404, "not-found")


def test_tariffs_and_customer_assignments(api: httpx.Client, mdm: Mdm) -> None:
    tariffs = _all_pages(api, "/v1/tariffs", mdm.engineer, limit=1)
    assert [(t["tariff_id"], t["valid_from"], t["valid_to"]) for t in tariffs] == [
        ("RES-TOU", "2026-01-01", "2026-03-14"), ("RES-TOU", "2026-03-15", None)]
    assert tariffs[1]["doc"]["energy_price"] == {"peak": 0.50, "offpeak": 0.25}
    assert tariffs[0]["tariff_class"] == "residential"
    assert api.get("/v1/tariffs", params={"tariff_id": "GHOST"}, headers=mdm.engineer).json()["items"] == []
    c0 = api.get(f"/v1/customers/{mdm.customers[mdm.meters[0]]}/tariffs", headers=mdm.engineer).json()
    assert [(a["tariff_id"], a["valid_from"], a["valid_to"], a["tariff_known"]) for a in c0["items"]] == [
        ("RES-TOU", "2026-01-01", None, True)]
    c1 = api.get(f"/v1/customers/{mdm.customers[mdm.meters[1]]}/tariffs", headers=mdm.engineer).json()
    assert [(a["tariff_id"], a["tariff_known"]) for a in c1["items"]] == [("GHOST", False)]
    c2 = api.get(f"/v1/customers/{mdm.customers[mdm.meters[2]]}/tariffs", headers=mdm.engineer)
    assert c2.status_code == 200 and c2.json()["items"] == []  # the archive's flat price
    _problem(api.get("/v1/customers/NOPE/tariffs", headers=mdm.engineer), 404, "not-found")
    _problem(api.get("/v1/tariffs", params={"tariff": "RES-TOU"}, headers=mdm.engineer), 422,
             "unknown-parameter")
    _problem(api.get("/v1/tariffs"), 401)


# --- manual edits (these make new runs: they come last)


def _edit(api: httpx.Client, meter: str, headers: dict[str, str], **body: Any) -> httpx.Response:
    return api.post(f"/v1/vee/meters/{meter}/edits", json=body, headers=headers)


GOOD = {"bucket": "2026-03-10T12:00:00+01:00", "value_kwh": 1.5, "reason": "customer read the register"}


def test_edits_need_the_admin_role_and_a_reason(api: httpx.Client, mdm: Mdm) -> None:
    m = mdm.meters[3]
    _problem(_edit(api, m, mdm.engineer, **GOOD), 403, "forbidden")
    _problem(_edit(api, m, {}, **GOOD), 401)
    for bad in ({"reason": None}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501},
                {"value_kwh": -0.1}, {"value_kwh": "lots"}, {"bucket": "2026-03-10T12:00:00"},
                {"bucket": 1773140400}, {"bucket": "10 March"}, {"value": 1.0}):
        body = {**GOOD, **bad}
        _problem(_edit(api, m, mdm.admin, **body), 422, "validation")
    for missing in ("reason", "value_kwh", "bucket"):
        body = {k: v for k, v in GOOD.items() if k != missing}
        res = _problem(_edit(api, m, mdm.admin, **body), 422, "validation")
        assert any(e["loc"][-1] == missing for e in res["errors"]), res
    off = _problem(_edit(api, m, mdm.admin, **{**GOOD, "bucket": "2026-03-10T12:07:30+01:00"}), 422,
                   "bucket-off-grid")
    assert "2026-03-10T12:00:00+01:00" in off["detail"]  # the interval that holds the instant
    _problem(_edit(api, m, mdm.admin, **{**GOOD, "bucket": "2099-01-01T00:00:00Z"}), 422, "bucket-in-future")
    _problem(_edit(api, "NOPE", mdm.admin, **GOOD), 404, "not-found")
    _problem(_edit(api, mdm.balance_meter, mdm.admin, **GOOD), 422, "not-a-customer-meter")
    with psycopg.connect(mdm.dsn) as conn:  # none of the refusals wrote anything
        assert conn.execute("SELECT count(*) FROM vee_intervals WHERE source = 'manual'").fetchone() == (0,)


def test_an_edit_lands_as_manual_in_the_next_vee_run_and_bill(
        api: httpx.Client, mdm: Mdm, caplog: pytest.LogCaptureFixture) -> None:
    m3, m4, m0 = mdm.meters[3], mdm.meters[4], mdm.meters[0]
    bucket = datetime.fromisoformat(GOOD["bucket"])  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="wattrail.audit"):
        res = _edit(api, m3, mdm.admin, **GOOD)
    assert res.status_code == 201, res.text
    made = res.json()
    assert (made["source"], made["method"], made["edited_by"], made["reason"]) == (
        "manual", "manual", mdm.admin_name, GOOD["reason"])
    assert made["raw_kwh"] == pytest.approx(0.28) and made["value_kwh"] == 1.5  # raw from the readings
    assert datetime.fromisoformat(made["bucket"]) == bucket and made["run_id"] is None
    line = next(r.getMessage() for r in caplog.records if r.name == "wattrail.audit")
    assert f"meter={m3!r}" in line and "ops alice" in line and "customer read the register" in line
    assert "bucket=2026-03-10T11:00:00+00:00" in line and f"version={made['version']}" in line
    # mark one interval of meter 4 missing, and re-edit meter 0's estimated one (raw stays NULL)
    gone = _edit(api, m4, mdm.admin, bucket="2026-03-10T11:00:00Z", value_kwh=None, reason="meter swap")
    assert gone.status_code == 201 and gone.json()["value_kwh"] is None
    p = month_period(PERIOD, zone(TZ))
    est_bucket = p.start + timedelta(seconds=STEP * MISSING_K)
    fix = _edit(api, m0, mdm.admin, bucket=est_bucket.isoformat(), value_kwh=0.3, reason="site visit")
    assert fix.status_code == 201 and fix.json()["raw_kwh"] is None  # the latest layer row's raw
    assert fix.json()["version"] > made["version"]

    with psycopg.connect(mdm.dsn) as conn:
        billed = run_billing(conn, PERIOD)
    assert billed.vee.run_id > mdm.vee_run
    window = {"from": "2026-03-10T00:00:00Z", "to": "2026-03-11T00:00:00Z"}
    versions = api.get(f"/v1/vee/meters/{m3}/intervals", params=window, headers=mdm.engineer).json()["items"]
    assert [(v["source"], v["method"], v["in_force"]) for v in versions] == [
        ("manual", "manual", True), ("vee", "manual", False)]
    manual, applied = versions
    assert applied["run_id"] == billed.vee.run_id and applied["value_kwh"] == pytest.approx(1.5)
    assert applied["raw_kwh"] == pytest.approx(0.28) and manual["version"] == made["version"]
    m4v = api.get(f"/v1/vee/meters/{m4}/intervals", params=window, headers=mdm.engineer).json()["items"]
    assert [(v["source"], v["method"], v["value_kwh"]) for v in m4v] == [
        ("manual", "manual", None), ("vee", "manual", None)]
    m0v = api.get(f"/v1/vee/meters/{m0}/intervals", params={
        "from": est_bucket.isoformat(), "to": (est_bucket + timedelta(seconds=STEP)).isoformat()},
        headers=mdm.engineer).json()["items"]
    # the edit in force, then the new run's row (manual) and the first run's estimate
    assert [(v["source"], v["run_id"], v["method"], v["in_force"]) for v in m0v] == [
        ("manual", None, "manual", True), ("vee", billed.vee.run_id, "manual", False),
        ("vee", mdm.vee_run, "linear", False)]

    def bill(meter: str, run: int) -> list[dict[str, Any]]:
        items = api.get(f"/v1/billing/runs/{run}/determinants", params={"customer_id": mdm.customers[meter]},
                        headers=mdm.engineer).json()["items"]
        assert isinstance(items, list)
        return items

    before, after = bill(m3, mdm.billing_run)[0], bill(m3, billed.run_id)[0]
    assert after["total_kwh"] - before["total_kwh"] == pytest.approx(1.5 - 0.28)
    gap = bill(m4, billed.run_id)[0]
    assert gap["missing"] == 1 and gap["amount"] is None  # marked missing stays missing: not billable
    latest = api.get(f"/v1/billing/customers/{mdm.customers[m3]}/determinants", params={"period": PERIOD},
                     headers=mdm.engineer).json()
    assert latest["run"]["run_id"] == billed.run_id

    # a VEE run without billing applies the edits too, and becomes the default for the days
    with psycopg.connect(mdm.dsn) as conn:
        again = run_vee(conn, PERIOD)
    days = api.get(f"/v1/vee/meters/{m4}/days", headers=mdm.engineer).json()["items"]
    assert {d["run_id"] for d in days} == {again.run_id} and len(days) == 31
    m3v = api.get(f"/v1/vee/meters/{m3}/intervals", params=window, headers=mdm.engineer).json()["items"]
    assert [(v["run_id"], v["method"], v["in_force"]) for v in m3v] == [
        (None, "manual", True), (again.run_id, "manual", False), (billed.vee.run_id, "manual", False)]


def test_raw_from_readings_refuses_what_the_vee_would_not_read() -> None:
    b = datetime(2026, 3, 10, 11, tzinfo=UTC)

    def r(sec: int, wh: float | None, q: Quality = Quality.VALID) -> dict[str, Any]:
        return {"ts": b + timedelta(seconds=sec), "import_wh": wh, "quality": int(q)}

    assert raw_from_readings([r(0, 1000.0), r(900, 1250.0)], b) == pytest.approx(0.25)
    assert raw_from_readings([r(-40, 1000.0), r(450, 1100.0), r(930, 1250.0)], b) == pytest.approx(0.25)
    assert raw_from_readings([r(0, 1000.0)], b) is None  # no closing reading
    assert raw_from_readings([r(0, 1000.0), r(900, 1000.0, Quality.STALE)], b) is None
    assert raw_from_readings([r(0, 1000.0), r(450, None, Quality.COMMS_LOST), r(900, 1250.0)], b) is None
    assert raw_from_readings([r(0, 1000.0), r(900, None)], b) is None
    assert raw_from_readings([r(0, 1000.0), r(900, 900.0)], b) == pytest.approx(-0.1)  # a rollback stays
