"""The broker's server certificate and cloud services' client certificates from the device CA:
usages, names, chain, revocation, and a real TLS handshake between them (OpenSSL, strict)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from security.pki import (
    PkiError,
    TlsCredentials,
    init_ca,
    init_log_key,
    issue_server,
    issue_service,
    revoke,
)

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    init_ca(tmp_path / "ca", now=NOW)
    return tmp_path / "ca"


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_server_certificate_names_and_usage(ca_dir: Path) -> None:
    creds = issue_server(ca_dir, "mosquitto", dns_names=["mosquitto", "localhost"],
                         ip_addresses=["127.0.0.1", "::1"], now=NOW)
    assert creds.key == ca_dir / "servers" / "mosquitto" / "tls.key"
    assert stat.S_IMODE(creds.key.stat().st_mode) == 0o600
    cert = _cert(creds.cert)
    cert.verify_directly_issued_by(_cert(ca_dir / "ca.crt"))
    assert _cn(cert) == "mosquitto"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mosquitto", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                       ipaddress.ip_address("::1")]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # recorded like agents' certificates, so revocation by name finds it
    assert (ca_dir / "certs" / f"{cert.serial_number:x}.pem").read_bytes() == creds.cert.read_bytes()


def test_server_defaults_its_san_to_its_name(ca_dir: Path) -> None:
    cert = _cert(issue_server(ca_dir, "broker.example", now=NOW).cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.example"]


def test_service_certificate_is_a_client_identity(ca_dir: Path) -> None:
    creds = issue_service(ca_dir, "wattrail-ingestor", now=NOW)
    assert creds.cert == ca_dir / "services" / "wattrail-ingestor" / "tls.crt"
    assert stat.S_IMODE(creds.key.stat().st_mode) == 0o600
    cert = _cert(creds.cert)
    cert.verify_directly_issued_by(_cert(ca_dir / "ca.crt"))
    assert _cn(cert) == "wattrail-ingestor"  # the broker ACL's user name
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


@pytest.mark.parametrize(("call", "name"), [
    pytest.param(issue_service, "ingestor", id="service-without-reserved-prefix"),
    pytest.param(issue_service, "GW-R1-SUB", id="service-named-like-an-agent"),
    pytest.param(issue_service, "wattrail-../x", id="service-path"),
    pytest.param(issue_server, "", id="server-empty"),
    pytest.param(issue_server, "a/b", id="server-path"),
    pytest.param(issue_server, "x" * 65, id="server-too-long"),
])
def test_bad_names_are_refused(ca_dir: Path, call, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PkiError):
        call(ca_dir, name)
    assert not (ca_dir / "servers").exists() and not (ca_dir / "services").exists()


def test_bad_ip_is_refused(ca_dir: Path) -> None:
    with pytest.raises(PkiError, match="not an IP address"):
        issue_server(ca_dir, "mosquitto", ip_addresses=["mosquitto"])


def test_no_ca_no_certificate(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match="no CA"):
        issue_service(tmp_path, "wattrail-ingestor")


def test_revoke_by_name_lists_server_and_service(ca_dir: Path) -> None:
    server = _cert(issue_server(ca_dir, "mosquitto", now=NOW).cert)
    first = _cert(issue_service(ca_dir, "wattrail-ingestor", now=NOW).cert)
    second = _cert(issue_service(ca_dir, "wattrail-ingestor", now=NOW).cert)  # a re-issue
    revoke(ca_dir, "wattrail-ingestor", now=NOW)
    crl = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
    assert {r.serial_number for r in crl} == {first.serial_number, second.serial_number}
    revoke(ca_dir, "mosquitto", now=NOW)
    crl = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
    assert server.serial_number in {r.serial_number for r in crl}
    assert crl.is_signature_valid(_cert(ca_dir / "ca.crt").public_key())  # type: ignore[arg-type]


def test_log_key_is_created_once(tmp_path: Path) -> None:
    path, kid = init_log_key(tmp_path / "pki")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(kid) == 16
    assert (tmp_path / "pki" / "log.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
    before = path.read_bytes()
    with pytest.raises(PkiError, match="never replaced"):
        init_log_key(tmp_path / "pki")
    assert path.read_bytes() == before


def _handshake(server: TlsCredentials, client: TlsCredentials, dial: str) -> str:
    """A mutual-TLS handshake over a socket pair, both sides strict; returns the client's CN as
    the server sees it (what Mosquitto's use_identity_as_username takes)."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(server.cert, server.key)
    sctx.load_verify_locations(server.ca_cert)
    sctx.verify_mode = ssl.CERT_REQUIRED
    cctx = ssl.create_default_context(cafile=str(client.ca_cert))
    cctx.load_cert_chain(client.cert, client.key)
    for ctx in (sctx, cctx):
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    a, b = socket.socketpair()
    seen: dict[str, object] = {}

    def serve() -> None:
        try:
            with sctx.wrap_socket(a, server_side=True) as tls:
                seen["peer"] = tls.getpeercert()
        except (ssl.SSLError, OSError) as exc:
            seen["error"] = exc

    t = threading.Thread(target=serve)
    t.start()
    try:
        with cctx.wrap_socket(b, server_hostname=dial):
            pass
    finally:
        t.join(10)
    if "error" in seen:
        raise seen["error"]  # type: ignore[misc]
    peer = seen["peer"]
    assert isinstance(peer, dict)
    return str(dict(x[0] for x in peer["subject"])["commonName"])


def test_broker_and_ingestor_certificates_complete_a_strict_mtls_handshake(ca_dir: Path) -> None:
    server = issue_server(ca_dir, "mosquitto", dns_names=["mosquitto", "localhost"],
                          ip_addresses=["127.0.0.1"])
    client = issue_service(ca_dir, "wattrail-ingestor")
    assert _handshake(server, client, "mosquitto") == "wattrail-ingestor"
    assert _handshake(server, client, "127.0.0.1") == "wattrail-ingestor"
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, client, "elsewhere")  # the hostname is checked against the SAN


def test_a_client_certificate_cannot_serve(ca_dir: Path) -> None:
    not_a_server = issue_service(ca_dir, "wattrail-mosquitto")
    client = issue_service(ca_dir, "wattrail-ingestor")
    fake = TlsCredentials("x", not_a_server.key, not_a_server.cert, not_a_server.ca_cert)
    with pytest.raises(ssl.SSLError):
        _handshake(fake, client, "wattrail-mosquitto")
