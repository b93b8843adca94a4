"""Revocation as an operator does it (`wattrail pki revoke`, then `wattrail agents register`)
reaches a running ingestor without a restart, and is judged at the cloud's receipt, not at the
sent-at the (possibly stolen) key chose. What was stored before the registry heard of the
revocation is flagged by the API's fresh verdict and by the offline verifier."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
from cryptography import x509
from typer.testing import CliRunner

from cloud.api.config import Settings
from cloud.api.main import create_app
from cloud.api.tokens import create_token
from cloud.ingest.service import Ingestor
from cloud.ingest.writer import registry_generation
from edge.outbox import Outbox
from edge.publisher import BrokerConfig, Publisher
from security.audit_bundle import verify_bundle
from security.keys import load_private_key
from security.pki import init_ca, issue_agent
from tests.conftest import ClientCert, Services
from tests.integration.ingest.test_service import rows, wait_until
from tests.support.api_server import serve_api
from tests.unit.security.envelopes import Agent
from wattrail.cli import app

pytestmark = pytest.mark.integration
runner = CliRunner()


def _cli(*args: str) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def test_a_revocation_reaches_a_running_ingestor_and_backdating_does_not_help(
    services: Services, dsn: str, ingestors: Callable[..., Ingestor],
    issue_client_cert: Callable[[str], ClientCert], agent_id: str, tmp_path: Path,
) -> None:
    pki = tmp_path / "pki"
    init_ca(pki)
    hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    creds = issue_agent(pki, agent_id, now=hour_ago)  # valid from an hour ago: room to backdate
    _cli("agents", "register", "--pki-dir", str(pki), "--dsn", dsn)
    ing = ingestors()
    tls = issue_client_cert(agent_id)  # the broker's CA for TLS; the signing key is the PKI's
    agent = Agent(agent_id, load_private_key(creds.signing_key))
    ob = Outbox(tmp_path / "outbox.db")
    pub = Publisher(agent_id, BrokerConfig(services.mqtt_host, services.mqtt_port,
                                           services.ca_cert, tls.cert, tls.key), ob,
                    resend_after=2.0, backoff_cap=0.5)
    pub.start()

    def send(sent_at: dt.datetime) -> None:
        data = agent.envelope(sent_at_ms=_ms(sent_at), meter=f"{agent_id}-m")
        ob.append(agent.seq, data, 0)

    def verdicts() -> list[tuple[int, str]]:
        stored = rows(dsn, f"SELECT seq, verdict FROM envelopes WHERE agent_id = '{agent_id}'")
        kept = rows(dsn, f"SELECT seq, reason FROM quarantine WHERE agent_id = '{agent_id}'")
        return sorted({(int(s), str(v)) for s, v in stored + kept})

    try:
        send(hour_ago + dt.timedelta(minutes=10))
        wait_until(lambda: verdicts() == [(1, "ok")])
        # X.509 revocation times are whole seconds (truncated): an envelope received in the
        # second of the revocation counts as after it. Revoke in a later second than seq 1's
        # receipt, so seq 1 is unambiguously from before.
        got = rows(dsn, f"SELECT received_at FROM envelopes WHERE agent_id = '{agent_id}'")[0][0]
        wait_until(lambda: dt.datetime.now(dt.UTC).replace(microsecond=0) > got)
        _cli("pki", "revoke", agent_id, "--dir", str(pki))
        # stolen key, registry not told yet: the cloud cannot know, so it stores (and the audit
        # below flags it afterwards)
        send(hour_ago + dt.timedelta(minutes=20))
        wait_until(lambda: verdicts() == [(1, "ok"), (2, "ok")])
        before = rows(dsn, "SELECT generation FROM registry_generation")[0][0]
        _cli("agents", "register", "--pki-dir", str(pki), "--dsn", dsn)
        assert rows(dsn, "SELECT generation FROM registry_generation")[0][0] > before
        # signed now, claiming to be from before the revocation: refused, no restart
        send(hour_ago + dt.timedelta(minutes=30))
        wait_until(lambda: len(verdicts()) == 3)
        assert verdicts() == [(1, "ok"), (2, "ok"), (3, "revoked_key")]
        detail = rows(dsn, f"SELECT detail FROM quarantine WHERE agent_id = '{agent_id}'")[0][0]
        assert "received at" in detail, detail
    finally:
        pub.stop()
        ob.close()
    assert ing.stats.quarantined == {"revoked_key": 1}

    # the API's fresh verdict and the offline verifier both see seq 2 arrived after revocation
    with psycopg.connect(dsn, autocommit=True) as conn:
        token = create_token(conn, "auditor", "revocation test").secret
    settings = Settings(dsn=dsn, ca_cert=pki / "ca.crt")  # type: ignore[call-arg]
    head = {"Authorization": f"Bearer {token}"}
    with serve_api(create_app(settings)) as base, httpx.Client(base_url=base, timeout=30) as c:
        fresh = {s: c.get(f"/v1/audit/envelopes/{agent_id}/{s}", headers=head).json()
                 for s in (1, 2)}
        now = dt.datetime.now(dt.UTC)
        bundle = c.get("/v1/audit/export", headers=head, params={
            "agent_id": agent_id, "start": (hour_ago - dt.timedelta(minutes=1)).isoformat(),
            "end": now.isoformat()}).json()
    assert [fresh[s]["envelope"]["stored_verdict"] for s in (1, 2)] == ["ok", "ok"]
    assert fresh[1]["verification"]["status"] == "ok", fresh[1]
    assert fresh[2]["verification"]["status"] == "revoked_key", fresh[2]
    assert "received at" in fresh[2]["verification"]["reason"]
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    report = verify_bundle(json.loads(json.dumps(bundle)), ca, None)
    keyed = [(f.seq, f.kind) for f in report.findings if f.kind == "key"]
    assert keyed == [(2, "key")], report.findings


def test_the_generation_moves_with_every_registry_change(dsn: str, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    init_ca(pki)
    issue_agent(pki, "tx-gen-1")
    with psycopg.connect(dsn) as conn:
        g0 = registry_generation(conn)
        conn.rollback()
    _cli("agents", "register", "--pki-dir", str(pki), "--dsn", dsn)
    with psycopg.connect(dsn) as conn:
        g1 = registry_generation(conn)
        conn.execute("DELETE FROM agent_keys WHERE agent_id = 'tx-gen-1'")
        assert registry_generation(conn) == g1, "moves at commit, not before"
        conn.commit()
        assert registry_generation(conn) > g1 > g0
