from __future__ import annotations

import stat
from pathlib import Path

from typer.testing import CliRunner

from security.key_certificate import load_keyring
from wattrail.cli import app

runner = CliRunner()


def test_init_issue_revoke(tmp_path: Path) -> None:
    d = str(tmp_path / "pki")
    res = runner.invoke(app, ["pki", "init", "--dir", d])
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE((tmp_path / "pki" / "ca.key").stat().st_mode) == 0o600
    res = runner.invoke(app, ["pki", "issue-agent", "tx-7", "--dir", d])
    assert res.exit_code == 0, res.output
    for name in ("tls.key", "signing.key"):
        mode = stat.S_IMODE((tmp_path / "pki" / "agents" / "tx-7" / name).stat().st_mode)
        assert mode == 0o600, name
    ring = load_keyring(tmp_path / "pki")
    [cert] = ring.for_agent("tx-7")
    assert cert.revoked_at_ms is None
    assert cert.kid.hex() in res.output
    res = runner.invoke(app, ["pki", "revoke", "tx-7", "--dir", d])
    assert res.exit_code == 0, res.output
    [cert] = load_keyring(tmp_path / "pki").for_agent("tx-7")
    assert cert.revoked_at_ms is not None


def test_errors_are_one_line_and_exit_1(tmp_path: Path) -> None:
    d = str(tmp_path / "pki")
    assert runner.invoke(app, ["pki", "init", "--dir", d]).exit_code == 0
    again = runner.invoke(app, ["pki", "init", "--dir", d])
    assert again.exit_code == 1
    assert "already exists" in again.output
    bad = runner.invoke(app, ["pki", "issue-agent", "wattrail-ingestor", "--dir", d])
    assert bad.exit_code == 1
    assert "reserved" in bad.output
    unknown = runner.invoke(app, ["pki", "revoke", "nobody", "--dir", d])
    assert unknown.exit_code == 1


def test_revoke_takes_a_bare_hex_serial(tmp_path: Path) -> None:
    d = str(tmp_path / "pki")
    assert runner.invoke(app, ["pki", "init", "--dir", d]).exit_code == 0
    assert runner.invoke(app, ["pki", "issue-agent", "tx-8", "--dir", d]).exit_code == 0
    assert len(load_keyring(tmp_path / "pki").for_agent("tx-8")) == 1
    serials = [p.stem for p in (tmp_path / "pki" / "certs").glob("*.pem")]
    assert len(serials) == 2  # TLS and signing certificates
    # as openssl prints it: upper case, no 0x
    res = runner.invoke(app, ["pki", "revoke", max(serials).upper(), "--dir", d])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["pki", "revoke", "abcdef0123", "--dir", d])
    assert res.exit_code == 1 and "no agent and no certificate serial" in res.output
