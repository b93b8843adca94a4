"""`wattrail pki issue-server` / `issue-service`: files, names, usages, and one-line errors."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from wattrail.cli import app

runner = CliRunner()


def test_issue_server_and_service(tmp_path: Path) -> None:
    d = str(tmp_path / "pki")
    assert runner.invoke(app, ["pki", "init", "--dir", d]).exit_code == 0
    res = runner.invoke(app, ["pki", "issue-server", "mosquitto", "--dir", d, "--dns", "mosquitto",
                              "--dns", "localhost", "--ip", "127.0.0.1"])
    assert res.exit_code == 0, res.output
    cert = x509.load_pem_x509_certificate((tmp_path / "pki/servers/mosquitto/tls.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mosquitto", "localhost"]
    assert stat.S_IMODE((tmp_path / "pki/servers/mosquitto/tls.key").stat().st_mode) == 0o600

    res = runner.invoke(app, ["pki", "issue-service", "wattrail-ingestor", "--dir", d])
    assert res.exit_code == 0, res.output
    cert = x509.load_pem_x509_certificate((tmp_path / "pki/services/wattrail-ingestor/tls.crt").read_bytes())
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    res = runner.invoke(app, ["pki", "revoke", "wattrail-ingestor", "--dir", d])
    assert res.exit_code == 0 and "1 certificate(s)" in res.output, res.output


def test_errors_exit_1(tmp_path: Path) -> None:
    d = str(tmp_path / "pki")
    assert runner.invoke(app, ["pki", "issue-service", "wattrail-ingestor", "--dir", d]).exit_code == 1
    assert runner.invoke(app, ["pki", "init", "--dir", d]).exit_code == 0
    bad = runner.invoke(app, ["pki", "issue-service", "ingestor", "--dir", d])
    assert bad.exit_code == 1 and "wattrail-" in bad.output
    bad = runner.invoke(app, ["pki", "issue-server", "mosquitto", "--dir", d, "--ip", "nowhere"])
    assert bad.exit_code == 1 and "not an IP address" in bad.output
    assert runner.invoke(app, ["pki", "init-log-key", "--dir", d]).exit_code == 0
    again = runner.invoke(app, ["pki", "init-log-key", "--dir", d])
    assert again.exit_code == 1 and "never replaced" in again.output
