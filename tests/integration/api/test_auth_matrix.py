"""Every endpoint x every role x no token / a revoked token / a junk token, with the status
each must answer. The table of endpoints is checked against the app's OpenAPI operations, so a
route added without an entry here fails `test_every_route_is_in_the_table`."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from cloud.api.config import Settings
from cloud.api.main import create_app
from tests.integration.api.conftest import auth
from tests.integration.api.seed import Seed

pytestmark = pytest.mark.integration

PUBLIC = frozenset({"anonymous", "revoked", "junk", "engineer", "auditor", "admin"})  # no token read
READ = frozenset({"engineer", "auditor", "admin"})
AUDIT = frozenset({"auditor", "admin"})
ADMIN = frozenset({"admin"})


@dataclass(frozen=True)
class Entry:
    allowed: frozenset[str]
    request: Callable[[Seed], dict[str, Any]]  # kwargs for httpx.Client.request: url, params, json
    ok: int = 200


def _iso(s: Seed) -> dict[str, str]:
    return {"start": s.start.isoformat(), "end": s.end.isoformat()}


TABLE: dict[tuple[str, str], Entry] = {
    ("GET", "/healthz"): Entry(PUBLIC, lambda s: {"url": "/healthz"}),
    ("GET", "/metrics"): Entry(PUBLIC, lambda s: {"url": "/metrics"}),
    ("GET", "/v1/regions"): Entry(READ, lambda s: {"url": "/v1/regions"}),
    ("GET", "/v1/regions/{region_id}"): Entry(READ, lambda s: {"url": f"/v1/regions/{s.region_id}"}),
    ("GET", "/v1/feeders"): Entry(READ, lambda s: {"url": "/v1/feeders"}),
    ("GET", "/v1/feeders/{feeder_id}"): Entry(READ, lambda s: {"url": f"/v1/feeders/{s.feeder_id}"}),
    ("GET", "/v1/transformers"): Entry(READ, lambda s: {"url": "/v1/transformers"}),
    ("GET", "/v1/transformers/{transformer_id}"): Entry(
        READ, lambda s: {"url": f"/v1/transformers/{s.transformer_id}"}
    ),
    ("GET", "/v1/meters"): Entry(READ, lambda s: {"url": "/v1/meters"}),
    ("GET", "/v1/meters/{meter_id}"): Entry(READ, lambda s: {"url": f"/v1/meters/{s.meter_id}"}),
    ("GET", "/v1/customers"): Entry(READ, lambda s: {"url": "/v1/customers"}),
    ("GET", "/v1/customers/{customer_id}"): Entry(READ, lambda s: {"url": f"/v1/customers/{s.customer_id}"}),
    ("GET", "/v1/map/transformers"): Entry(READ, lambda s: {"url": "/v1/map/transformers"}),
    ("GET", "/v1/map/customers"): Entry(READ, lambda s: {"url": "/v1/map/customers"}),
    # re-importing the same grid is a no-op, so the admin's 200 can be asked for again and again
    ("POST", "/v1/topology/import"): Entry(
        ADMIN, lambda s: {"url": "/v1/topology/import", "json": s.grid_doc}
    ),
    ("GET", "/v1/meters/{meter_id}/readings"): Entry(
        READ, lambda s: {"url": f"/v1/meters/{s.meter_id}/readings", "params": _iso(s)}
    ),
    ("GET", "/v1/analysis/runs"): Entry(READ, lambda s: {"url": "/v1/analysis/runs"}),
    ("GET", "/v1/analysis/runs/{run_id}"): Entry(READ, lambda s: {"url": f"/v1/analysis/runs/{s.run_id}"}),
    ("GET", "/v1/loss"): Entry(READ, lambda s: {"url": "/v1/loss"}),
    ("GET", "/v1/loss/{level}/{entity_id}"): Entry(
        READ, lambda s: {"url": f"/v1/loss/transformer/{s.transformer_id}"}
    ),
    ("GET", "/v1/loss/{level}/{entity_id}/intervals"): Entry(
        READ, lambda s: {"url": f"/v1/loss/transformer/{s.transformer_id}/intervals"}
    ),
    ("GET", "/v1/suspects"): Entry(READ, lambda s: {"url": "/v1/suspects"}),
    ("GET", "/v1/suspects/{meter_id}"): Entry(READ, lambda s: {"url": f"/v1/suspects/{s.meter_id}"}),
    ("GET", "/v1/power-quality"): Entry(READ, lambda s: {"url": "/v1/power-quality"}),
    ("GET", "/v1/outages"): Entry(READ, lambda s: {"url": "/v1/outages"}),
    ("GET", "/v1/regional-summaries"): Entry(READ, lambda s: {"url": "/v1/regional-summaries"}),
    ("GET", "/v1/regional-summaries/{region_id}"): Entry(
        READ, lambda s: {"url": f"/v1/regional-summaries/{s.region_id}"}
    ),
    ("GET", "/v1/audit/envelopes/{agent_id}/{seq}"): Entry(
        AUDIT, lambda s: {"url": f"/v1/audit/envelopes/{s.agent_id}/2"}
    ),
    ("GET", "/v1/audit/reading"): Entry(
        AUDIT,
        lambda s: {
            "url": "/v1/audit/reading",
            "params": {"meter_id": s.meter_id, "ts": s.reading_ts[2].isoformat()},
        },
    ),
    ("GET", "/v1/audit/agents"): Entry(AUDIT, lambda s: {"url": "/v1/audit/agents"}),
    ("GET", "/v1/audit/agents/{agent_id}/chain"): Entry(
        AUDIT, lambda s: {"url": f"/v1/audit/agents/{s.agent_id}/chain"}
    ),
    ("GET", "/v1/audit/quarantine"): Entry(AUDIT, lambda s: {"url": "/v1/audit/quarantine"}),
    ("GET", "/v1/audit/quarantine/{quarantine_id}"): Entry(
        AUDIT, lambda s: {"url": f"/v1/audit/quarantine/{s.quarantine_id}"}
    ),
    ("GET", "/v1/audit/log/tree-head"): Entry(AUDIT, lambda s: {"url": "/v1/audit/log/tree-head"}),
    ("GET", "/v1/audit/log/tree-heads"): Entry(AUDIT, lambda s: {"url": "/v1/audit/log/tree-heads"}),
    ("GET", "/v1/audit/envelopes/{agent_id}/{seq}/inclusion"): Entry(
        AUDIT, lambda s: {"url": f"/v1/audit/envelopes/{s.agent_id}/3/inclusion"}
    ),
    ("GET", "/v1/audit/log/consistency"): Entry(
        AUDIT, lambda s: {"url": "/v1/audit/log/consistency", "params": {"first": s.heads[0]}}
    ),
    ("GET", "/v1/audit/export"): Entry(
        AUDIT, lambda s: {"url": "/v1/audit/export", "params": {"agent_id": s.agent_id, **_iso(s)}}
    ),
    ("POST", "/v1/tokens"): Entry(
        ADMIN,
        lambda s: {"url": "/v1/tokens", "json": {"name": f"m-{uuid.uuid4().hex[:6]}", "role": "engineer"}},
        ok=201,
    ),
    ("GET", "/v1/tokens"): Entry(ADMIN, lambda s: {"url": "/v1/tokens"}),
    ("GET", "/v1/vee/runs"): Entry(READ, lambda s: {"url": "/v1/vee/runs"}),
    ("GET", "/v1/vee/runs/{run_id}"): Entry(READ, lambda s: {"url": f"/v1/vee/runs/{s.vee_run_id}"}),
    ("GET", "/v1/vee/meters/{meter_id}/days"): Entry(
        READ, lambda s: {"url": f"/v1/vee/meters/{s.meter_id}/days"}
    ),
    ("GET", "/v1/vee/meters/{meter_id}/intervals"): Entry(
        READ, lambda s: {"url": f"/v1/vee/meters/{s.meter_id}/intervals",
                         "params": {"from": s.start.isoformat(), "to": s.end.isoformat()}}
    ),
    # an edit adds a version to the post-VEE layer; no other call here reads it back
    ("POST", "/v1/vee/meters/{meter_id}/edits"): Entry(
        ADMIN, lambda s: {"url": f"/v1/vee/meters/{s.meter_id}/edits", "json": {
            "bucket": _past_quarter(), "value_kwh": 0.1, "reason": "auth matrix"}},
        ok=201,
    ),
    ("GET", "/v1/billing/runs"): Entry(READ, lambda s: {"url": "/v1/billing/runs"}),
    ("GET", "/v1/billing/runs/{run_id}/determinants"): Entry(
        READ, lambda s: {"url": f"/v1/billing/runs/{s.billing_run_id}/determinants"}
    ),
    ("GET", "/v1/billing/customers/{customer_id}/determinants"): Entry(
        READ, lambda s: {"url": f"/v1/billing/customers/{s.customer_id}/determinants",
                         "params": {"period": s.period}}
    ),
    ("GET", "/v1/revenue"): Entry(
        READ, lambda s: {"url": "/v1/revenue", "params": {"period": s.period,
                                                          "billing_run": s.billing_run_id}}
    ),
    ("GET", "/v1/tariffs"): Entry(READ, lambda s: {"url": "/v1/tariffs"}),
    ("GET", "/v1/customers/{customer_id}/tariffs"): Entry(
        READ, lambda s: {"url": f"/v1/customers/{s.customer_id}/tariffs"}
    ),
    ("DELETE", "/v1/tokens/{token_id}"): Entry(ADMIN, lambda s: {"url": f"/v1/tokens/{_spare_token(s)}"}),
    ("GET", "/v1/archive/checks"): Entry(READ, lambda s: {"url": "/v1/archive/checks"}),
    ("GET", "/v1/archive/issues"): Entry(
        READ, lambda s: {"url": "/v1/archive/issues", "params": {"check_id": _archive_check(s)}}
    ),
    ("GET", "/v1/archive/issues/counts"): Entry(READ, lambda s: {"url": "/v1/archive/issues/counts"}),
    ("GET", "/v1/archive/connectivity"): Entry(
        READ, lambda s: {"url": "/v1/archive/connectivity", "params": {"check_id": _archive_check(s)}}
    ),
    # the seeded archive has no suspicion to accept: the admin gets through to the 404, and
    # nothing is changed (tests/integration/archive/test_api.py accepts real ones)
    ("POST", "/v1/archive/connectivity/{meter_id}/accept"): Entry(
        ADMIN, lambda s: {"url": f"/v1/archive/connectivity/{s.meter_id}/accept",
                          "json": {"comment": "auth matrix"}},
        ok=404,
    ),
    ("GET", "/v1/archive/corrections"): Entry(READ, lambda s: {"url": "/v1/archive/corrections"}),
}


def _past_quarter() -> str:
    """The start of a quarter hour that has ended (an edit needs one)."""
    import time
    from datetime import UTC, datetime

    t = (int(time.time()) // 900 - 2) * 900
    return datetime.fromtimestamp(t, UTC).isoformat()


def _spare_token(s: Seed) -> int:
    """A fresh token to revoke, so every DELETE has something to act on."""
    import psycopg

    from cloud.api.tokens import create_token

    with psycopg.connect(s.dsn, autocommit=True) as conn:
        return create_token(conn, "engineer", "to be revoked").info.id


def _archive_check(s: Seed) -> int:
    """An archive check without findings or suspicions (the seed makes none), so the
    listings of one check answer 200; made once per seeded database."""
    import psycopg

    with psycopg.connect(s.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT min(check_id) FROM archive_checks").fetchone()
        if row is not None and row[0] is not None:
            return int(row[0])
        got = conn.execute(
            "INSERT INTO archive_checks (started_at, finished_at, period_start, period_end, step_s,"
            " parameters, notes, findings, suspicions) VALUES (now(), now(), %s, %s, 900, '{}', '[]', 0, 0)"
            " RETURNING check_id", [s.start, s.end]).fetchone()
        assert got is not None
        return int(got[0])


def _operations() -> list[tuple[str, str]]:
    spec = create_app(Settings(dsn="postgresql://unused/unused")).openapi()
    return sorted((m.upper(), p) for p, ops in spec["paths"].items() for m in ops)


OPERATIONS = _operations()
PRINCIPALS = ("anonymous", "revoked", "junk", "engineer", "auditor", "admin")


def test_every_route_is_in_the_table() -> None:
    missing = [op for op in OPERATIONS if op not in TABLE]
    stale = [op for op in TABLE if op not in OPERATIONS]
    assert not missing, f"routes without an auth-matrix entry: {missing}"
    assert not stale, f"auth-matrix entries for routes that do not exist: {stale}"


def _expected(entry: Entry, who: str) -> int:
    if who in entry.allowed:
        return entry.ok
    if who in ("anonymous", "revoked", "junk"):
        return 401
    return 403


@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_auth_matrix(client: httpx.Client, seeded: Seed, method: str, path: str, who: str) -> None:
    entry = TABLE.get((method, path))
    if entry is None:
        pytest.fail(f"{method} {path} has no entry in TABLE")
    headers = {
        "anonymous": {},
        "revoked": auth(seeded.revoked_token),
        "junk": auth("wtr_" + "x" * 43),
        **{r: auth(t) for r, t in seeded.tokens.items()},
    }[who]
    expected = _expected(entry, who)
    # an allowed call must not change state that other calls rely on: only the admin writes
    res = client.request(method, headers=headers, **entry.request(seeded))
    assert res.status_code == expected, res.text[:500]
    if expected >= 400:
        assert res.headers["content-type"].startswith("application/problem+json")
        body = res.json()
        assert body["status"] == expected and body["title"]
        if expected == 401:
            assert res.headers["www-authenticate"].startswith("Bearer")
