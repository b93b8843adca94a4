"""The API against a real database: input errors as problem+json, CSV, cursor pagination,
reports with known numbers, and the audit trail checked with security.merkle and the keys."""

from __future__ import annotations

import base64
import csv
import io
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest

from cloud.api.cursors import encode
from tests.integration.api.conftest import auth
from tests.integration.api.seed import Seed

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def eng(seeded: Seed) -> dict[str, str]:
    return auth(seeded.tokens["engineer"])


@pytest.fixture(scope="module")
def aud(seeded: Seed) -> dict[str, str]:
    return auth(seeded.tokens["auditor"])


def problem(res: httpx.Response, status: int) -> dict[str, Any]:
    assert res.status_code == status, res.text
    assert res.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = res.json()
    assert body["status"] == status and body["title"] and body["instance"] == res.request.url.path
    return body


def readings_url(s: Seed) -> str:
    return f"/v1/meters/{s.meter_id}/readings"


# -- bad input: a 4xx problem that says what to fix, never a 500 ------------------------------

BAD_READINGS: list[tuple[str, dict[str, str], int, str]] = [
    ("no range", {}, 422, "start"),
    ("not a time", {"start": "yesterday", "end": "2026-01-01"}, 422, "start"),
    ("end before start", {"start": "2026-01-02", "end": "2026-01-01"}, 422, "must be after"),
    ("empty range", {"start": "2026-01-01", "end": "2026-01-01"}, 422, "must be after"),
    ("raw over a year", {"start": "2025-01-01", "end": "2026-01-01"}, 422, "at most 31 days"),
    (
        "unknown resolution",
        {"start": "2026-01-01", "end": "2026-01-02", "resolution": "week"},
        422,
        "resolution",
    ),
    (
        "page too big",
        {"start": "2026-01-01", "end": "2026-01-02", "limit": "100000"},
        422,
        "maximum page size 1000",
    ),
    ("page zero", {"start": "2026-01-01", "end": "2026-01-02", "limit": "0"}, 422, "limit"),
    ("bad format", {"start": "2026-01-01", "end": "2026-01-02", "format": "xml"}, 422, "format"),
    ("junk cursor", {"start": "2026-01-01", "end": "2026-01-02", "cursor": "!!notbase64"}, 400, "cursor"),
    (
        "another listing's cursor",
        {"start": "2026-01-01", "end": "2026-01-02", "cursor": encode("customers", ["C-1"])},
        400,
        "cursor",
    ),
    (
        "cursor with a bad time",
        {
            "start": "2026-01-01",
            "end": "2026-01-02",
            "cursor": encode("readings-raw-MTR-000001", ["not a time"]),
        },
        400,
        "cursor",
    ),
    ("year 10000", {"start": "9999-12-31T23:00:00-05:00", "end": "9999-12-31T23:30:00-05:00"}, 422, "years"),
]


@pytest.mark.parametrize(
    ("params", "status", "says"), [b[1:] for b in BAD_READINGS], ids=[b[0] for b in BAD_READINGS]
)
def test_bad_readings_parameters(
    client: httpx.Client, seeded: Seed, eng: dict[str, str], params: dict[str, str], status: int, says: str
) -> None:
    body = problem(client.get(readings_url(seeded), params=params, headers=eng), status)
    assert says in (body.get("detail", "") + str(body.get("errors", ""))), body


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", "/v1/nowhere", 404),
        ("PUT", "/v1/regions", 405),
        ("GET", "/v1/meters/no-such-meter/readings?start=2026-01-01&end=2026-01-02", 404),
        ("GET", "/v1/regions/no-such-region", 404),
        ("GET", "/v1/loss?level=planet", 422),
        ("GET", "/v1/loss?level=region&feeder_id=F1", 422),
        ("GET", "/v1/analysis/runs/999999", 404),
        ("GET", "/v1/suspects?min_score=2", 422),
        ("GET", "/v1/map/customers?bbox=1,2,3", 422),
        ("GET", "/v1/map/customers?bbox=nan,0,1,1", 422),
        ("GET", "/v1/audit/envelopes/agent-api-1/0", 422),
        ("GET", "/v1/audit/envelopes/agent-api-1/99999999999999999999999", 422),
        ("GET", "/v1/regions?limit=abc", 422),
        ("GET", "/v1/customers?region_id=%00x", 400),
        ("GET", "/v1/customers?regoin_id=R1", 422),  # a typo must not silently list everyone
        ("GET", "/v1/audit/quarantine?since=1700000000", 422),  # ISO 8601 only, as documented
        ("GET", "/v1/audit/reading?meter_id=m&ts=2026-02-30", 422),
    ],
)
def test_errors_are_problem_json(
    client: httpx.Client, seeded: Seed, method: str, url: str, status: int
) -> None:
    headers = auth(seeded.tokens["admin"])
    problem(client.request(method, url, headers=headers), status)


def test_validation_problem_lists_every_error(
    client: httpx.Client, seeded: Seed, eng: dict[str, str]
) -> None:
    body = problem(client.get(readings_url(seeded), params={"limit": "x"}, headers=eng), 422)
    locs = {tuple(e["loc"]) for e in body["errors"]}
    assert {("query", "start"), ("query", "end"), ("query", "limit")} <= locs
    assert body["type"] == "urn:wattrail:problem:validation"


# -- readings, CSV, pagination --------------------------------------------------------------


def test_raw_readings_with_units_quality_and_provenance(
    client: httpx.Client, seeded: Seed, eng: dict[str, str]
) -> None:
    res = client.get(
        readings_url(seeded),
        params={"start": seeded.start.isoformat(), "end": seeded.end.isoformat()},
        headers=eng,
    )
    assert res.status_code == 200
    items = res.json()["items"]
    assert [i["seq"] for i in items] == sorted(seeded.envelopes)  # one reading per envelope
    first = items[0]
    assert first["import_wh"] == 1001.0 and first["quality"] == "valid"
    assert first["provenance"] == "signed" and first["agent_id"] == seeded.agent_id
    assert {"v_l1_v", "i_n_a", "freq_hz", "status_flags"} <= set(first)
    assert res.json()["next_cursor"] is None


def test_readings_pages_cover_the_range_once(client: httpx.Client, seeded: Seed, eng: dict[str, str]) -> None:
    params: dict[str, str] = {"start": seeded.start.isoformat(), "end": seeded.end.isoformat(), "limit": "2"}
    seqs: list[int] = []
    pages = 0
    while True:
        body = client.get(readings_url(seeded), params=params, headers=eng).json()
        pages += 1
        seqs += [i["seq"] for i in body["items"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert seqs == sorted(seeded.envelopes)
    assert pages == 4  # 7 readings in pages of 2


def test_rollup_resolutions(client: httpx.Client, seeded: Seed, eng: dict[str, str]) -> None:
    base = {"start": seeded.start.isoformat(), "end": seeded.end.isoformat()}
    day = client.get(readings_url(seeded), params={**base, "resolution": "day"}, headers=eng).json()["items"]
    fifteen = client.get(readings_url(seeded), params={**base, "resolution": "15min"}, headers=eng).json()[
        "items"
    ]
    # registers 1001 .. 1010 over the envelopes: energy between the first and last reading
    total = sum(i["import_wh"] or 0 for i in fifteen)
    assert total == pytest.approx(1010.0 - 1001.0)
    assert sum(i["import_wh"] or 0 for i in day) == pytest.approx(total)
    assert set(fifteen[0]) == {"bucket", "import_wh", "export_wh", "readings"}


def test_csv_by_parameter_and_by_accept(client: httpx.Client, seeded: Seed, eng: dict[str, str]) -> None:
    params = {"start": seeded.start.isoformat(), "end": seeded.end.isoformat(), "limit": "3"}
    by_param = client.get(readings_url(seeded), params={**params, "format": "csv"}, headers=eng)
    by_accept = client.get(readings_url(seeded), params=params, headers={**eng, "Accept": "text/csv"})
    for res in (by_param, by_accept):
        assert res.status_code == 200 and res.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(res.text)))
        assert len(rows) == 3
        assert rows[0]["import_wh"] == "1001.0" and rows[0]["quality"] == "valid"
        assert rows[0]["export_wh"] == ""  # missing is empty, never 0
        assert res.headers["x-next-cursor"]
        assert 'rel="next"' in res.headers["link"] and "cursor=" in res.headers["link"]
    # the Link header leads to the next page
    nxt = client.get(
        readings_url(seeded),
        params={**params, "format": "csv", "cursor": by_param.headers["x-next-cursor"]},
        headers=eng,
    )
    assert [r["seq"] for r in csv.DictReader(io.StringIO(nxt.text))] == ["4", "5", "8"]


def test_topology_pages_and_filters_match_the_database(
    client: httpx.Client, seeded: Seed, eng: dict[str, str]
) -> None:
    with psycopg.connect(seeded.dsn) as conn:
        want = [r[0] for r in conn.execute("SELECT customer_id FROM customers ORDER BY customer_id")]
        on_tx = [
            r[0]
            for r in conn.execute(
                "SELECT customer_id FROM customers WHERE transformer_id = %s ORDER BY customer_id",
                [seeded.transformer_id],
            )
        ]
    got: list[str] = []
    cursor = None
    while True:
        body = client.get(
            "/v1/customers", params={"limit": 5, **({"cursor": cursor} if cursor else {})}, headers=eng
        ).json()
        got += [c["customer_id"] for c in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert got == want
    body = client.get("/v1/customers", params={"transformer_id": seeded.transformer_id}, headers=eng).json()
    assert [c["customer_id"] for c in body["items"]] == on_tx and on_tx
    assert all(
        c["region_id"] == seeded.region_id
        for c in client.get("/v1/customers", params={"region_id": seeded.region_id}, headers=eng).json()[
            "items"
        ]
    )


def test_geojson_layers(client: httpx.Client, seeded: Seed, eng: dict[str, str]) -> None:
    res = client.get("/v1/map/transformers", headers=eng)
    assert res.headers["content-type"] == "application/geo+json"
    fc = res.json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 3
    f = next(f for f in fc["features"] if f["id"] == seeded.transformer_id)
    lon, lat = f["geometry"]["coordinates"]
    tx = client.get(f"/v1/transformers/{seeded.transformer_id}", headers=eng).json()
    assert (lon, lat) == (tx["lon"], tx["lat"])  # RFC 7946 order: lon, lat
    w, s, e, n = lon - 1e-6, lat - 1e-6, lon + 1e-6, lat + 1e-6
    boxed = client.get("/v1/map/transformers", params={"bbox": f"{w},{s},{e},{n}"}, headers=eng).json()
    assert [x["id"] for x in boxed["features"]] == [seeded.transformer_id]
    cus = client.get("/v1/map/customers", params={"limit": 5}, headers=eng).json()
    assert len(cus["features"]) == 5 and cus["next_cursor"]
    rest = client.get("/v1/map/customers", params={"cursor": cus["next_cursor"]}, headers=eng).json()
    assert len(cus["features"]) + len(rest["features"]) == 12


# -- reports from the analytics tables ------------------------------------------------------


def test_loss_worst_first_and_series(client: httpx.Client, seeded: Seed, eng: dict[str, str]) -> None:
    worst = client.get("/v1/loss", params={"sort": "worst"}, headers=eng).json()["items"]
    assert [w["ntl_wh"] for w in worst] == [8000.0, 7000.0, None]  # unknown NTL last
    assert all(w["run_id"] == seeded.run_id for w in worst)
    page1 = client.get("/v1/loss", params={"sort": "worst", "limit": 1}, headers=eng).json()
    page2 = client.get(
        "/v1/loss", params={"sort": "worst", "limit": 2, "cursor": page1["next_cursor"]}, headers=eng
    ).json()
    assert [x["entity_id"] for x in page1["items"] + page2["items"]] == [w["entity_id"] for w in worst]
    regions = client.get("/v1/loss", params={"level": "region"}, headers=eng).json()["items"]
    assert regions[0]["loss_pct"] == 10.0 and regions[0]["entity_id"] == seeded.region_id
    detail = client.get(f"/v1/loss/transformer/{seeded.transformer_id}", headers=eng).json()
    assert detail["run"]["run_id"] == seeded.run_id and detail["loss"]["energy_in_wh"] == 100_000.0
    url = f"/v1/loss/transformer/{seeded.transformer_id}/intervals"
    step = client.get(url, headers=eng).json()["items"]
    hourly = client.get(url, params={"resolution": "hour"}, headers=eng).json()["items"]
    assert len(step) == 8 and step[0]["interval_s"] == 900
    assert sum(h["energy_in_wh"] for h in hourly) == 8000.0
    assert all(h["loss_pct"] == pytest.approx(10.0) and h["interval_s"] == 3600 for h in hourly)
    older = client.get("/v1/loss", params={"run_id": seeded.run_id - 1}, headers=eng).json()["items"]
    assert older == []  # the earlier run has no rows: run_id is honoured


def test_loss_worst_pages_one_by_one_and_past_the_unknown(client: httpx.Client, seeded: Seed,
                                                         eng: dict[str, str]) -> None:
    """sort=worst pages on (ntl_wh DESC NULLS LAST, entity_id), the index's order; a cursor
    holds (-ntl_wh, or Infinity once among the unknown NTLs; entity_id)."""
    worst = client.get("/v1/loss", params={"sort": "worst"}, headers=eng).json()["items"]
    walked, cursor = [], None
    while True:
        params: dict[str, Any] = {"sort": "worst", "limit": 1, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/loss", params=params, headers=eng).json()
        walked += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == worst
    unknown = [w["entity_id"] for w in worst if w["ntl_wh"] is None]
    assert unknown
    kind = f"loss-transformer-worst-{seeded.run_id}"
    # among the unknown: only those after the cursor's entity id
    after_none = client.get("/v1/loss", params={"sort": "worst", "cursor": encode(kind, [float("inf"), ""])},
                            headers=eng).json()["items"]
    assert [w["entity_id"] for w in after_none] == unknown
    after_last = client.get("/v1/loss", params={"sort": "worst", "cursor": encode(
        kind, [float("inf"), unknown[-1]])}, headers=eng).json()["items"]
    assert after_last == []
    # from the top known NTL: everything below it, the unknown included
    top = worst[0]
    below = client.get("/v1/loss", params={"sort": "worst", "cursor": encode(
        kind, [-top["ntl_wh"], top["entity_id"]])}, headers=eng).json()["items"]
    assert below == worst[1:]


def test_suspects_and_detail(client: httpx.Client, seeded: Seed, eng: dict[str, str]) -> None:
    items = client.get("/v1/suspects", headers=eng).json()["items"]
    assert [s["rank"] for s in items] == [1, 2, 3, 4, 5]  # scores .95 .. .55 are >= 0.5
    assert all(s["score"] >= 0.5 for s in items)
    assert items[0]["evidence"]["bypass"] == 0.95 and items[0]["strongest_indicator"] == "bypass"
    everyone = client.get("/v1/suspects", params={"min_score": 0, "limit": 100}, headers=eng).json()["items"]
    assert len(everyone) == 12
    d = client.get(f"/v1/suspects/{items[0]['meter_id']}", headers=eng).json()
    assert d["indicators"] == {"bypass": 0.475} and d["run"]["run_id"] == seeded.run_id
    assert d["transformer_loss"]["entity_id"] == items[0]["transformer_id"]
    assert [h["run_id"] for h in d["history"]] == [seeded.run_id]


def test_quality_outages_regions(client: httpx.Client, seeded: Seed, eng: dict[str, str]) -> None:
    pq = client.get("/v1/power-quality", headers=eng).json()["items"]
    assert [(p["kind"], p["value"]) for p in pq] == [("overload", 1.3), ("voltage", 0.25)]
    assert pq[1]["transformer_id"] is not None and pq[1]["details"] == {"v_min": 198.5}
    only = client.get("/v1/power-quality", params={"kind": "voltage"}, headers=eng).json()["items"]
    assert [p["kind"] for p in only] == ["voltage"]
    out = client.get("/v1/outages", headers=eng).json()["items"]
    assert [(o["level"], o["duration_s"]) for o in out] == [("transformer", 3600.0), ("feeder", None)]
    ongoing = client.get("/v1/outages", params={"ongoing": "true"}, headers=eng).json()["items"]
    assert [o["level"] for o in ongoing] == ["feeder"]
    summary = client.get("/v1/regional-summaries", headers=eng).json()["items"]
    assert summary[0]["forecast_next_day_wh"] == pytest.approx(20.0 * 96)
    fc = client.get(f"/v1/regional-summaries/{seeded.region_id}", headers=eng).json()
    assert len(fc["forecast"]) == 96 and fc["interval_s"] == 900
    ats = [fc["forecast"][i]["at"] for i in (0, 1)]
    assert ats[0] < ats[1]


# -- the audit trail ------------------------------------------------------------------------


def test_envelope_evidence_and_reverification(
    client: httpx.Client, seeded: Seed, aud: dict[str, str]
) -> None:
    ok = client.get(f"/v1/audit/envelopes/{seeded.agent_id}/2", headers=aud).json()
    assert base64.b64decode(ok["envelope"]["raw_base64"]) == seeded.envelopes[2]
    v = ok["verification"]
    assert v == {
        "status": "ok",
        "reason": v["reason"],
        "signature_valid": True,
        "stored_hash_matches": True,
        "chained_to_predecessor": True,
        "signer_matches_agent": True,
    }
    assert ok["key"]["certificate"]["ca_verified"] is True
    assert ok["key"]["certificate_pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert ok["key"]["key_id"] == ok["envelope"]["key_id"]
    gap = client.get(f"/v1/audit/envelopes/{seeded.agent_id}/8", headers=aud).json()["verification"]
    assert gap["status"] == "gap" and "6" in gap["reason"] and gap["chained_to_predecessor"] is False
    assert gap["signature_valid"] is True


def test_tampered_stored_bytes_are_reported(client: httpx.Client, seeded: Seed, aud: dict[str, str]) -> None:
    raw = seeded.envelopes[4]
    flipped = raw[:-1] + bytes([raw[-1] ^ 1])
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE envelopes SET raw = %s WHERE agent_id = %s AND seq = 4", [flipped, seeded.agent_id]
        )
        try:
            v = client.get(f"/v1/audit/envelopes/{seeded.agent_id}/4", headers=aud).json()["verification"]
        finally:
            conn.execute(
                "UPDATE envelopes SET raw = %s WHERE agent_id = %s AND seq = 4", [raw, seeded.agent_id]
            )
    assert v["status"] == "bad_signature" and v["signature_valid"] is False
    assert v["stored_hash_matches"] is False


def test_reading_leads_to_its_envelope(client: httpx.Client, seeded: Seed, aud: dict[str, str]) -> None:
    res = client.get(
        "/v1/audit/reading",
        params={"meter_id": seeded.meter_id, "ts": seeded.reading_ts[5].isoformat()},
        headers=aud,
    )
    body = res.json()
    assert body["provenance"] == "signed" and body["evidence"]["envelope"]["seq"] == 5
    problem(
        client.get(
            "/v1/audit/reading",
            params={
                "meter_id": seeded.meter_id,
                "ts": (seeded.reading_ts[5] + timedelta(seconds=1)).isoformat(),
            },
            headers=aud,
        ),
        404,
    )


def test_chain_status(client: httpx.Client, seeded: Seed, aud: dict[str, str]) -> None:
    c = client.get(f"/v1/audit/agents/{seeded.agent_id}/chain", headers=aud).json()
    assert c["gaps"] == [{"from_seq": 6, "to_seq": 7}, {"from_seq": 9, "to_seq": 9}]
    assert (c["stored_envelopes"], c["last_seq"], c["missing_envelopes"], c["committed_upto"]) == (
        7,
        10,
        3,
        5,
    )
    assert c["quarantined_by_reason"] == {"bad_signature": 1}
    assert c["verdicts"] == {"ok": 5, "gap": 2} and c["unlogged_envelopes"] == 1
    q = client.get("/v1/audit/quarantine", params={"reason": "bad_signature"}, headers=aud).json()["items"]
    assert [x["id"] for x in q] == [seeded.quarantine_id] and q[0]["claimed_agent_id"] == seeded.agent_id
    assert (
        client.get("/v1/audit/quarantine", params={"reason": "oversized"}, headers=aud).json()["items"] == []
    )
    d = client.get(f"/v1/audit/quarantine/{seeded.quarantine_id}", headers=aud).json()
    assert len(base64.b64decode(d["raw_base64"])) == d["size_bytes"]


def test_a_run_says_what_its_data_lacked(client: httpx.Client, seeded: Seed) -> None:
    eng = auth(seeded.tokens["engineer"])
    run = client.get(f"/v1/analysis/runs/{seeded.run_id}", headers=eng).json()
    assert run["notes"] == ["export not measured for 3 customer(s)"]
    assert run["not_computed"] == {"bypass": "needs voltage and current; not in these data"}
