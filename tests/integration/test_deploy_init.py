"""`wattrail deploy init` against a real TimescaleDB: everything a fresh stack needs, and a
second run that changes nothing and says so; a revoked ingestor certificate is re-issued."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from typer.testing import CliRunner

from edge.config import load_config
from firmware_sim.grid_file import write_grid
from firmware_sim.grid_service import build_simulation
from security.pki import revoke
from wattrail.cli import app

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A grid file and an endpoints file as `wattrail sim --host 0.0.0.0` writes them."""
    grid = build_simulation(meters=30, seed=5).grid
    write_grid(grid, tmp_path / "grid.json")
    eps = [{"gateway_id": gw, "host": "0.0.0.0", "port": 15020 + i, "per_meter": False,
            "units": [{"unit_id": u, "meter_id": m} for u, m in units]}
           for i, (gw, units) in enumerate(grid.gateways().items())]
    (tmp_path / "endpoints.json").write_text(json.dumps({"endpoints": eps, "faults": {}}))
    return tmp_path


def _init(site: Path, dsn: str) -> str:
    res = runner.invoke(app, [
        "deploy", "init", "--pki-dir", str(site / "pki"), "--broker-dir", str(site / "broker"),
        "--grid", str(site / "grid.json"), "--endpoints", str(site / "endpoints.json"),
        "--agents-dir", str(site / "agents"), "--outbox-dir", str(site / "outbox"),
        "--meter-host", "simulator", "--dsn", dsn, "--token-file", str(site / "api-token")])
    assert res.exit_code == 0, res.output
    return res.output


def _db_state(dsn: str) -> tuple[object, ...]:
    with psycopg.connect(dsn) as conn:
        return tuple(conn.execute(q).fetchone() for q in (
            "SELECT count(*), max(version) FROM schema_migrations",
            "SELECT count(*), max(updated_at) FROM meters",
            "SELECT count(*), count(revoked_at) FROM agent_keys",
            "SELECT count(*), count(revoked_at) FROM api_tokens"))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_bootstrap_then_nothing_to_do(site: Path, db_dsn: str) -> None:
    first = _init(site, db_dsn)
    assert "nothing to do" not in first
    gateways = [e["gateway_id"] for e in json.loads((site / "endpoints.json").read_text())["endpoints"]]

    with psycopg.connect(db_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM meters").fetchone()[0] == 30 + 1 + 1  # + balance, head
        agents = {r[0] for r in conn.execute("SELECT agent_id FROM agent_keys WHERE revoked_at IS NULL")}
        assert agents == set(gateways)
        token = (site / "api-token").read_text().strip()
        from cloud.api.tokens import hash_token
        assert conn.execute("SELECT role FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL",
                            [hash_token(token)]).fetchone() == ("engineer",)

    for gw in gateways:  # the agent's own loader takes every generated file
        cfg = load_config(site / "agents" / f"{gw}.toml")
        assert cfg.agent_id == gw and cfg.broker.host == "mosquitto"
        assert {m.host for m in cfg.meters} == {"simulator"}
        assert cfg.signing_key == site / "pki" / "agents" / gw / "signing.key"
        assert cfg.broker.cert.exists() and cfg.broker.ca == site / "pki" / "ca.crt"
    assert (site / "broker" / "server.key").read_bytes() == (
        site / "pki" / "servers" / "mosquitto" / "tls.key").read_bytes()
    assert (site / "broker" / "ca.crl").read_bytes() == (site / "pki" / "crl.pem").read_bytes()

    files, db = _files(site), _db_state(db_dsn)
    second = _init(site, db_dsn)
    assert "nothing to do: everything was already in place" in second, second
    assert _files(site) == files
    assert _db_state(db_dsn) == db

    # revoke the ingestor: the next run re-issues it and hands the broker the new CRL
    old = x509.load_pem_x509_certificate((site / "pki/services/wattrail-ingestor/tls.crt").read_bytes())
    revoke(site / "pki", "wattrail-ingestor")
    third = _init(site, db_dsn)
    assert "service certificate wattrail-ingestor: issued (revoked)" in third, third
    new = x509.load_pem_x509_certificate((site / "pki/services/wattrail-ingestor/tls.crt").read_bytes())
    assert new.serial_number != old.serial_number
    crl = x509.load_pem_x509_crl((site / "broker" / "ca.crl").read_bytes())
    assert {r.serial_number for r in crl} == {old.serial_number}
    assert "broker certificate mosquitto: unchanged" in third


def test_without_a_database_the_files_are_still_written(site: Path) -> None:
    res = runner.invoke(app, ["deploy", "init", "--pki-dir", str(site / "pki"),
                              "--agent", "meter-room-1"], env={"WATTRAIL_DSN": ""})
    assert res.exit_code == 0, res.output
    assert "database: skipped" in res.output
    assert (site / "pki" / "agents" / "meter-room-1" / "signing.key").exists()


def test_a_refused_database_exits_2(site: Path) -> None:
    res = runner.invoke(app, ["deploy", "init", "--pki-dir", str(site / "pki"),
                              "--dsn", "postgresql://127.0.0.1:1/none"])
    assert res.exit_code == 2
    assert "the database refused" in res.output
