"""The archive routes (cloud/api/routes/archive.py) on the corrupted archive, through the real
API under uvicorn: a check's findings and suspicions, an admin accepting one (the customer's
record changes, the loss report is rerun, the log has it), the roles, and bad input as
problems. The theft suspects and the transformer loss say which of theirs are suspected."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from cloud.analytics.batch import analyze
from cloud.api.config import Settings
from cloud.api.main import create_app
from cloud.api.tokens import create_token
from cloud.archive import store
from tests.integration.api.conftest import auth
from tests.support.api_server import serve_api

from .conftest import END, START, STEP, Corrupted

pytestmark = pytest.mark.integration

MOVED = "MTR-000001"  # recorded on the other transformer of its feeder
MOVED_HOME = "R1-F01-T01"  # the transformer it really hangs on


@dataclass
class Api:
    client: httpx.Client
    check_id: int
    run_id: int
    admin: dict[str, str]
    engineer: dict[str, str]


@pytest.fixture(scope="module")
def api(corrupted: Corrupted) -> Iterator[Api]:
    with psycopg.connect(corrupted.dsn, autocommit=True) as conn:
        run_id = analyze(conn, START, END, step_s=STEP).run_id  # for the flags and the rerun
        check_id = store.run_check(conn, START, END, step_s=STEP).check_id
        admin = create_token(conn, "admin", "ops alice").secret
        engineer = create_token(conn, "engineer", "planner bob").secret
    settings = Settings(dsn=corrupted.dsn, rate_limit_per_s=10_000.0, rate_limit_burst=10_000)
    with serve_api(create_app(settings), name="archive-api") as base, \
            httpx.Client(base_url=base, timeout=120) as client:
        yield Api(client, check_id, run_id, auth(admin), auth(engineer))


def _items(api: Api, url: str, **params: Any) -> list[dict[str, Any]]:
    """Every page of a listing, with a small page size so the cursors are used."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        res = api.client.get(url, headers=api.engineer,
                             params={**params, "limit": 3, **({"cursor": cursor} if cursor else {})})
        assert res.status_code == 200, res.text
        body = res.json()
        out += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out


def _problem(res: httpx.Response, status: int) -> dict[str, Any]:
    assert res.status_code == status, res.text
    assert res.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = res.json()
    assert body["status"] == status and body["detail"]
    return body


def test_checks_issues_and_counts(api: Api, corrupted: Corrupted) -> None:
    checks = _items(api, "/v1/archive/checks")
    assert [c["check_id"] for c in checks] == [api.check_id]
    c = checks[0]
    assert c["step_s"] == STEP and c["suspicions"] >= 4 and c["findings"] >= 1
    assert c["period_start"].startswith(START.isoformat()[:19])
    issues = _items(api, "/v1/archive/issues")
    assert len(issues) == c["findings"]
    assert [i["finding_no"] for i in issues] == sorted({i["finding_no"] for i in issues})
    missing = _items(api, "/v1/archive/issues", kind="not_in_archive", check_id=api.check_id)
    assert corrupted.unrecorded in {i["object_id"] for i in missing}
    hit = next(i for i in missing if i["object_id"] == corrupted.unrecorded)
    assert hit["severity"] == "high" and hit["fix"] and isinstance(hit["evidence"], dict)
    assert all(i["severity"] == "high" for i in _items(api, "/v1/archive/issues", severity="high"))
    region = next(i["region_id"] for i in issues if i["region_id"])
    assert all(i["region_id"] == region for i in _items(api, "/v1/archive/issues", region_id=region))
    counts = _items(api, "/v1/archive/issues/counts", since=START.isoformat())
    assert sum(n["n"] for n in counts) == c["findings"]
    assert {n["check_id"] for n in counts} == {api.check_id}
    assert _items(api, "/v1/archive/issues/counts", since="2999-01-01") == []


def test_connectivity_names_the_four_meters(api: Api, corrupted: Corrupted) -> None:
    sus = _items(api, "/v1/archive/connectivity")
    assert [s["rank"] for s in sus] == list(range(1, len(sus) + 1))
    by_meter = {s["meter_id"]: s for s in sus}
    assert set(by_meter) == set(corrupted.moved) | set(corrupted.rephased)
    for mid, wrong in corrupted.moved.items():
        s = by_meter[mid]
        assert s["kind"] == "transformer" and s["status"] == "open"
        assert s["recorded_transformer_id"] == wrong
        assert s["suggested_transformer_id"] == corrupted.true_tx[mid]
    for mid, wrong_phase in corrupted.rephased.items():
        s = by_meter[mid]
        assert (s["recorded_phase"], s["suggested_phase"]) == (wrong_phase, corrupted.true_phase[mid])
    phase = _items(api, "/v1/archive/connectivity", kind="phase")
    assert {s["meter_id"] for s in phase} == set(corrupted.rephased)


def test_suspects_and_loss_say_which_are_suspected(api: Api, corrupted: Corrupted) -> None:
    suspected = {s["meter_id"] for s in _items(api, "/v1/archive/connectivity", status="open")}
    theft = _items(api, "/v1/suspects", run_id=api.run_id, min_score=0)
    assert theft and all(t["connectivity_suspect"] == (t["meter_id"] in suspected) for t in theft)
    named = {tx for s in _items(api, "/v1/archive/connectivity", status="open")
             for tx in (s["recorded_transformer_id"], s["suggested_transformer_id"])}
    loss = _items(api, "/v1/loss", run_id=api.run_id)
    assert {x["entity_id"] for x in loss if x["connectivity_suspect"]} == named
    assert MOVED_HOME in named
    regions = _items(api, "/v1/loss", run_id=api.run_id, level="region")
    assert regions and not any(x["connectivity_suspect"] for x in regions)
    one = api.client.get(f"/v1/loss/transformer/{MOVED_HOME}", headers=api.engineer,
                         params={"run_id": api.run_id})
    assert one.status_code == 200 and one.json()["loss"]["connectivity_suspect"] is True


def test_accept_a_suggestion(api: Api, corrupted: Corrupted) -> None:
    assert corrupted.true_tx[MOVED] == MOVED_HOME and MOVED in corrupted.moved
    url = f"/v1/archive/connectivity/{MOVED}/accept"
    body = {"comment": "field visit FV-17"}
    _problem(api.client.post(url, json=body, headers=api.engineer), 403)
    _problem(api.client.post(url, json=body), 401)
    res = api.client.post(url, json=body, headers=api.admin)
    assert res.status_code == 201, res.text
    got = res.json()
    assert got["meter_id"] == MOVED and got["correction_id"] >= 1
    assert got["old"]["transformer_id"] == corrupted.moved[MOVED]
    assert got["new"]["transformer_id"] == MOVED_HOME
    assert got["recompute_run_id"] is not None and got["recompute_run_id"] > api.run_id
    with psycopg.connect(corrupted.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT c.transformer_id, m.transformer_id FROM meters m JOIN customers c"
                           " USING (customer_id) WHERE m.meter_id = %s", [MOVED]).fetchone()
    assert row == (MOVED_HOME, MOVED_HOME)
    again = _problem(api.client.post(url, json=body, headers=api.admin), 409)
    assert MOVED in again["detail"]
    status = {s["meter_id"]: s["status"] for s in _items(api, "/v1/archive/connectivity")}
    assert status[MOVED] == "accepted"
    log = _items(api, "/v1/archive/corrections")
    assert log[0]["correction_id"] == got["correction_id"] and log[0]["actor"] == "ops alice"
    assert log[0]["comment"] == "field visit FV-17" and log[0]["check_id"] == api.check_id
    assert log[0]["new"] == got["new"] and log[0]["recompute_run_id"] == got["recompute_run_id"]
    assert [c["meter_id"] for c in _items(api, "/v1/archive/corrections", meter_id=MOVED)] == [MOVED]
    theft = _items(api, "/v1/suspects", run_id=api.run_id, min_score=0)
    assert not any(t["connectivity_suspect"] for t in theft if t["meter_id"] == MOVED)


@pytest.mark.parametrize(("url", "params"), [
    ("/v1/archive/issues", {"severity": "bogus"}),
    ("/v1/archive/issues", {"check_id": "abc"}),
    ("/v1/archive/issues", {"kind": "no_such_kind"}),
    ("/v1/archive/issues", {"regoin_id": "R1"}),
    ("/v1/archive/issues/counts", {"since": "yesterday"}),
    ("/v1/archive/connectivity", {"status": "maybe"}),
    ("/v1/archive/connectivity", {"check_id": "0"}),
    ("/v1/archive/checks", {"limit": "0"}),
])
def test_bad_parameters_are_422_problems(api: Api, url: str, params: dict[str, str]) -> None:
    _problem(api.client.get(url, params=params, headers=api.engineer), 422)


def test_not_found_and_bad_bodies(api: Api) -> None:
    _problem(api.client.get("/v1/archive/issues", params={"check_id": 999_999}, headers=api.engineer), 404)
    _problem(api.client.get("/v1/archive/checks", params={"cursor": "junk"}, headers=api.engineer), 400)
    _problem(api.client.post("/v1/archive/connectivity/MTR-999999/accept", json={"comment": "x"},
                             headers=api.admin), 404)
    open_one = _items(api, "/v1/archive/connectivity", status="open")[-1]["meter_id"]
    url = f"/v1/archive/connectivity/{open_one}/accept"
    for bad in ({}, {"comment": "  "}, {"comment": "x", "check_id": "abc"}, {"comment": "x", "actor": "me"}):
        _problem(api.client.post(url, json=bad, headers=api.admin), 422)
    _problem(api.client.post(url, json={"comment": "x", "check_id": 999_999}, headers=api.admin), 404)
