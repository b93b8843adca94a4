"""Connection errors are explained by who is at fault."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from edge.broker_errors import explain_tls_error


def _ssl_error(reason: str) -> ssl.SSLError:
    e = ssl.SSLError(1, f"[SSL: {reason}] alert")
    e.reason = reason
    return e


@pytest.mark.parametrize(("exc", "expected"), [
    pytest.param(_ssl_error("SSLV3_ALERT_CERTIFICATE_REVOKED"), "it is revoked", id="revoked"),
    pytest.param(_ssl_error("TLSV1_ALERT_UNKNOWN_CA"), "a CA the broker does not trust", id="ca"),
    pytest.param(_ssl_error("SSLV3_ALERT_CERTIFICATE_EXPIRED"), "expired", id="expired"),
    pytest.param(_ssl_error("UNEXPECTED_EOF_WHILE_READING"), "TLS error", id="eof"),
    pytest.param(ConnectionRefusedError(111, "refused"), "broker is down", id="refused"),
    pytest.param(TimeoutError("t"), "timed out", id="timeout"),
])
def test_explanations(exc: BaseException, expected: str) -> None:
    msg = explain_tls_error(exc, ca=Path("ca.crt"), cert=Path("tls.crt"))
    assert expected in msg


def test_our_refusal_of_the_broker_names_our_ca_file() -> None:
    e = ssl.SSLCertVerificationError(1, "certificate verify failed")
    e.verify_message = "unable to get local issuer certificate"
    msg = explain_tls_error(e, ca=Path("/etc/wattrail/ca.crt"), cert=Path("tls.crt"))
    assert "we refused the broker's certificate" in msg and "/etc/wattrail/ca.crt" in msg
