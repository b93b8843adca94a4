"""Tokens (API and CLI), the rate limit, metrics, health with the database gone, topology
import refusals, and the OpenAPI/docs pages."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import psycopg
import pytest
import typer
from fastapi import FastAPI, Request
from typer.testing import CliRunner

from cloud.api import problems
from cloud.api.config import Settings
from cloud.api.main import create_app
from cloud.api.ratelimit import TokenBuckets
from tests.integration.api.conftest import auth, settings_for
from tests.integration.api.seed import Seed
from wattrail.commands.api import mount

pytestmark = pytest.mark.integration


@asynccontextmanager
async def asgi(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            yield c


def test_token_lifecycle_over_the_api(client: httpx.Client, seeded: Seed) -> None:
    admin = auth(seeded.tokens["admin"])
    made = client.post("/v1/tokens", json={"name": "planning notebook", "role": "auditor"}, headers=admin)
    assert made.status_code == 201
    body = made.json()
    assert body["token"].startswith("wtr_") and body["role"] == "auditor"
    new = auth(body["token"])
    assert client.get("/v1/audit/log/tree-head", headers=new).status_code == 200
    assert client.get("/v1/tokens", headers=new).status_code == 403  # auditors do not manage tokens
    listed = client.get("/v1/tokens", params={"limit": 1000}, headers=admin).json()["items"]
    assert any(t["id"] == body["id"] and "token" not in t for t in listed)
    with psycopg.connect(seeded.dsn) as conn:
        stored = conn.execute("SELECT token_hash FROM api_tokens WHERE id = %s", [body["id"]]).fetchone()
    assert stored is not None and body["token"].encode() not in bytes(stored[0])
    gone = client.delete(f"/v1/tokens/{body['id']}", headers=admin)
    assert gone.status_code == 200 and gone.json()["revoked_at"]
    assert client.get("/v1/audit/log/tree-head", headers=new).status_code == 401
    assert client.delete("/v1/tokens/987654321", headers=admin).status_code == 404
    bad = client.post("/v1/tokens", json={"name": "x", "role": "root"}, headers=admin)
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"


def test_a_token_can_expire(client: httpx.Client, seeded: Seed) -> None:
    admin = auth(seeded.tokens["admin"])
    made = client.post("/v1/tokens", json={"name": "contractor", "role": "engineer",
                                           "expires_in_days": 30}, headers=admin).json()
    assert made["expires_at"] is not None
    new = auth(made["token"])
    assert client.get("/v1/regions", headers=new).status_code == 200
    with psycopg.connect(seeded.dsn) as conn:  # thirty days later, without waiting for them
        conn.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second' "
                     "WHERE id = %s", [made["id"]])
    assert client.get("/v1/regions", headers=new).status_code == 401
    for bad in (0, -1, 4000):
        res = client.post("/v1/tokens", json={"name": "x", "role": "engineer",
                                              "expires_in_days": bad}, headers=admin)
        assert res.status_code == 422, (bad, res.text)
    never = client.post("/v1/tokens", json={"name": "y", "role": "engineer"}, headers=admin)
    assert never.json()["expires_at"] is None


def test_token_cli(seeded: Seed) -> None:
    app = typer.Typer()
    mount(app)
    runner = CliRunner()
    res = runner.invoke(app, ["token", "create", "--dsn", seeded.dsn, "--role", "engineer", "--name", "cli"])
    assert res.exit_code == 0, res.output
    secret = res.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"wtr_[A-Za-z0-9_-]{43}", secret)
    listed = runner.invoke(app, ["token", "list", "--dsn", seeded.dsn])
    assert listed.exit_code == 0 and "cli" in listed.stdout and secret not in listed.stdout
    token_id = next(line.split()[0] for line in listed.stdout.splitlines() if line.endswith(" cli"))
    assert runner.invoke(app, ["token", "revoke", "--dsn", seeded.dsn, token_id]).exit_code == 0
    assert runner.invoke(app, ["token", "revoke", "--dsn", seeded.dsn, "999999"]).exit_code == 1
    bad = runner.invoke(app, ["token", "create", "--dsn", seeded.dsn, "--role", "god", "--name", "x"])
    assert bad.exit_code == 1 and "unknown role" in bad.output
    soon = runner.invoke(app, ["token", "create", "--dsn", seeded.dsn, "--role", "engineer",
                               "--name", "temp", "--expires-in-days", "7"])
    assert soon.exit_code == 0, soon.output
    listed = runner.invoke(app, ["token", "list", "--dsn", seeded.dsn])
    assert any(line.endswith(" temp") and "expires " in line for line in listed.stdout.splitlines())
    never = runner.invoke(app, ["token", "create", "--dsn", seeded.dsn, "--role", "engineer",
                                "--name", "x", "--expires-in-days", "0"])
    assert never.exit_code == 1 and "more than 0" in never.output
    assert "--port" in runner.invoke(app, ["api", "--help"]).stdout


def test_token_buckets_refill() -> None:
    now = [0.0]
    b = TokenBuckets(rate=2.0, burst=3, clock=lambda: now[0])
    assert [b.take(1) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(1) == pytest.approx(0.5)
    assert b.take(2) == 0.0  # buckets are per token
    now[0] = 0.5
    assert b.take(1) == 0.0
    assert b.retry_after(0.01) == "1" and b.retry_after(2.2) == "3"


@pytest.mark.asyncio
async def test_rate_limit_answers_429_with_retry_after(seeded: Seed) -> None:
    app = create_app(settings_for(seeded, rate_limit_per_s=0.01, rate_limit_burst=2))
    async with asgi(app) as c:
        eng, aud = auth(seeded.tokens["engineer"]), auth(seeded.tokens["auditor"])
        assert [(await c.get("/v1/regions", headers=eng)).status_code for _ in range(2)] == [200, 200]
        res = await c.get("/v1/regions", headers=eng)
        assert res.status_code == 429 and res.headers["content-type"] == "application/problem+json"
        assert int(res.headers["retry-after"]) >= 1
        assert (await c.get("/v1/regions", headers=aud)).status_code == 200  # other tokens unaffected
        metrics = (await c.get("/metrics")).text
    assert 'wattrail_api_requests_total{method="GET",route="/v1/regions",status="429"} 1.0' in metrics
    assert 'wattrail_api_requests_total{method="GET",route="/v1/regions",status="200"} 3.0' in metrics
    assert 'wattrail_api_request_seconds_count{method="GET",route="/v1/regions"} 4.0' in metrics


@pytest.mark.asyncio
async def test_database_down_is_503_not_500(seeded: Seed) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(
        Settings(
            dsn=f"postgresql://postgres@127.0.0.1:{port}/nothing",  # type: ignore[call-arg]
            pool_timeout_s=0.5,
        )
    )
    async with asgi(app) as c:
        health = await c.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"
        res = await c.get("/v1/regions", headers=auth(seeded.tokens["engineer"]))
        assert res.status_code == 503 and res.headers["content-type"] == "application/problem+json"
        assert res.headers["retry-after"]


def test_topology_import_refuses_a_bad_grid(client: httpx.Client, seeded: Seed) -> None:
    admin = auth(seeded.tokens["admin"])
    doc = {**seeded.grid_doc, "transformers": [{**seeded.grid_doc["transformers"][0], "rating_kva": -1}]}
    res = client.post("/v1/topology/import", json=doc, headers=admin)
    assert res.status_code == 422 and res.headers["content-type"] == "application/problem+json"
    bad = [e for e in res.json()["errors"] if "rating_kva" in e["msg"]]
    # the problem names the record: its id and the line of the body it starts on
    assert bad and bad[0]["key"] == doc["transformers"][0]["transformer_id"]
    assert isinstance(bad[0]["line"], int) and bad[0]["line"] >= 1
    ok = client.post("/v1/topology/import", json=seeded.grid_doc, headers=admin).json()
    assert ok["customers"] == 12 and ok["transformers"] == 3
    assert (
        client.post(
            "/v1/topology/import", content=b"[1", headers={**admin, "content-type": "application/json"}
        ).status_code
        == 422
    )


def _grid_csv(doc: dict) -> str:
    """The seeded grid as the MDM CSV: the same records, without Modbus addressing."""
    tx = {t["transformer_id"]: t for t in doc["transformers"]}
    feeder = {f["feeder_id"]: f for f in doc["feeders"]}
    rows = ["meter_id,customer_id,transformer_id,kind,tariff_per_kwh,transformer_rating_kva,"
            "feeder_id,region_id"]
    for c in doc["customers"]:
        t = tx[c["transformer_id"]]
        rows.append(f"{c['meter_id']},{c.get('customer_id') or c['meter_id']},{t['transformer_id']},"
                    f"{c['kind']},{c['tariff_per_kwh']},{t['rating_kva']},{t['feeder_id']},"
                    f"{feeder[t['feeder_id']]['region_id']}")
    return "\n".join(rows) + "\n"


def test_topology_import_takes_the_mdm_csv(client: httpx.Client, seeded: Seed) -> None:
    admin = auth(seeded.tokens["admin"])
    text = _grid_csv(seeded.grid_doc)
    csv_headers = {**admin, "content-type": "text/csv; charset=utf-8"}
    res = client.post("/v1/topology/import?currency=GBP", content=text.encode(), headers=csv_headers)
    assert res.status_code == 200, res.text
    assert res.json()["customers"] == 12 and res.json()["transformers"] == 3
    meter = seeded.grid_doc["customers"][0]["meter_id"]
    with psycopg.connect(seeded.dsn) as conn:
        row = conn.execute("SELECT c.currency, m.gateway_id FROM meters m JOIN customers c"
                           " USING (customer_id) WHERE m.meter_id = %s", [meter]).fetchone()
    assert row == ("GBP", None)  # the CSV's currency; no addressing in an MDM export
    # a bad CSV is refused with its line; another media type is a 415 that names both
    bad = client.post("/v1/topology/import", content=text.replace(",residential,", ",martian,", 1)
                      .encode(), headers=csv_headers)
    assert bad.status_code == 422 and any(
        e["line"] == 2 and "kind must be one of" in e["msg"] for e in bad.json()["errors"]), bad.text
    xml = client.post("/v1/topology/import", content=b"<grid/>",
                      headers={**admin, "content-type": "application/xml"})
    assert xml.status_code == 415 and "text/csv" in xml.json()["detail"]
    # the JSON document puts the addressing back (re-import is an upsert)
    assert client.post("/v1/topology/import", json=seeded.grid_doc, headers=admin).status_code == 200
    with psycopg.connect(seeded.dsn) as conn:
        again = conn.execute("SELECT gateway_id FROM meters WHERE meter_id = %s", [meter]).fetchone()
    assert again is not None and again[0] is not None


@pytest.mark.parametrize(("body", "says"), [
    ("phases", "phases must be one of 1, 3"),
    ("length", "length_km must be <="),
    ("surrogate", "lone surrogate"),
    ("deep", "nested deeper"),
    ("utf16", "UTF-16"),
])
def test_topology_import_answers_422_for_what_once_was_a_500(
        client: httpx.Client, seeded: Seed, body: str, says: str) -> None:
    admin = {**auth(seeded.tokens["admin"]), "content-type": "application/json"}
    doc = json.loads(json.dumps(seeded.grid_doc))
    if body == "phases":
        doc["customers"][0]["phases"] = 2
    elif body == "length":
        doc["feeders"][0]["length_km"] = 10**400
    elif body == "surrogate":
        doc["customers"][0]["customer_id"] = "\ud800"  # json.dumps escapes it: valid JSON text
    raw = {"deep": b"[" * 5000 + b"]" * 5000,
           "utf16": json.dumps(doc).encode("utf-16")}.get(body, json.dumps(doc).encode())
    res = client.post("/v1/topology/import", content=raw, headers=admin)
    assert res.status_code == 422, res.text
    assert res.headers["content-type"] == "application/problem+json"
    assert any(says in e["msg"] for e in res.json()["errors"]), res.json()
    # the connection stays usable: the next request on the same client is answered
    assert client.get("/healthz").status_code == 200


@pytest.mark.asyncio
async def test_a_value_the_database_refuses_is_a_400_that_names_it(seeded: Seed) -> None:
    with psycopg.connect(seeded.dsn) as conn, pytest.raises(psycopg.DataError) as refused:
        conn.execute("SELECT '1e400'::float8")
    request = Request({"type": "http", "method": "GET", "path": "/v1/x", "headers": [],
                       "query_string": b""})
    res = await problems._on_data_error(request, refused.value)
    body = json.loads(bytes(res.body))
    assert res.status_code == 400 and body["type"].endswith("bad-parameter")
    assert "1e400" in body["detail"] and "out of range" in body["detail"]


@pytest.mark.asyncio
async def test_bodies_above_the_limit_are_413_declared_or_chunked(seeded: Seed) -> None:
    app = create_app(settings_for(seeded, max_body_bytes=4096))
    admin = {**auth(seeded.tokens["admin"]), "content-type": "application/json"}

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    async with asgi(app) as c:
        declared = await c.post("/v1/topology/import", content=b" " * 5000, headers=admin)
        chunked = await c.post("/v1/topology/import", content=chunks(), headers=admin)
        small = await c.post("/v1/topology/import", content=b"[1", headers=admin)
    for res in (declared, chunked):
        assert res.status_code == 413, res.text
        assert res.headers["content-type"] == "application/problem+json"
        assert "larger than 4096 bytes" in res.json()["detail"]
    assert small.status_code == 422  # under the limit: the route judges it


def test_a_token_id_is_digits_only(client: httpx.Client, seeded: Seed) -> None:
    admin = auth(seeded.tokens["admin"])
    for bad in ("1.0", "01", "1e0", "-1"):
        res = client.delete(f"/v1/tokens/{bad}", headers=admin)
        assert res.status_code == 422, (bad, res.text)


def test_openapi_and_docs(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "Wattrail API"
    assert "/v1/audit/export" in spec["paths"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert "swagger-ui" in client.get("/docs").text
