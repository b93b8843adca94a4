"""The device PKI: a local X.509 CA that issues each agent its TLS identity and signing key.

Directory layout (everything the CA needs is in one folder; private keys are 0600):

    ca.key  ca.crt  crl.pem         the CA (ECDSA P-256) and its current CRL
    certs/<serial-hex>.pem          every certificate issued, for the keyring and revocation
    revoked.json                    {serial-hex: revoked-at ms}, the CRL's source
    agents/<agent-id>/tls.key|crt   mTLS client identity: P-256, CN = agent id, clientAuth
    agents/<agent-id>/signing.key|crt   Ed25519 envelope key; its "key certificate"
    servers/<name>/tls.key|crt      a TLS server (the broker): serverAuth, SubjectAltName
    services/<name>/tls.key|crt     a cloud service's TLS client identity (wattrail-ingestor)
    log.key  log.pub                the transparency log's Ed25519 key (init_log_key)

The key certificate is an X.509 certificate over the Ed25519 public key: CN = agent id,
SubjectKeyIdentifier = the key id (SHA-256(raw key)[:16]), validity = the key's window, an
extended key usage of our own (so it is no TLS client certificate) and a non-critical
extension with the rotation seq (`from_seq`, DER INTEGER). Both OIDs live under 2.25 (UUID
OIDs, X.667), which needs no registration. This module does file IO; nothing here networks.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocols.topics import RESERVED_PREFIX, check_agent_id
from security.key_certificate import OID_ENVELOPE_SIGNING, OID_FROM_SEQ, der_uint, key_certificate
from security.keyring import KeyCertificate
from security.keys import key_id, save_private_key, write_private_file

CRL_DAYS = 30  # Mosquitto refuses an expired CRL: `revoke` or `write_crl` re-signs it
CLOCK_SKEW = dt.timedelta(minutes=5)  # certificates start a little early for slow clocks


class PkiError(Exception):
    """The CA folder or a certificate is not what this operation needs; `path` says where."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        self.path = path
        super().__init__(f"{message}: {path}" if path else message)


@dataclass(frozen=True, slots=True)
class AgentCredentials:
    agent_id: str
    tls_key: Path
    tls_cert: Path
    signing_key: Path
    signing_cert: Path
    ca_cert: Path
    key_cert: KeyCertificate


def _now(now: dt.datetime | None) -> dt.datetime:
    return (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def _load_ca(directory: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    except FileNotFoundError as exc:
        raise PkiError("no CA here; run init_ca first", path=directory) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError("ca.key is not an EC key", path=directory / "ca.key")
    return key, cert


def _builder(
    subject: str, issuer: x509.Name, public: CertificatePublicKeyTypes, start: dt.datetime, days: int
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + dt.timedelta(days=days))
    )


def _no_usage(*besides: str) -> dict[str, bool]:
    """KeyUsage's other bits, all off (its constructor wants every one spelled out)."""
    names = ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return {n: False for n in names if n not in besides}


def init_ca(directory: Path, *, name: str = "Wattrail device CA", days: int = 3650,
            now: dt.datetime | None = None) -> x509.Certificate:
    """Create a CA in `directory` (refuses to overwrite one) and an empty CRL."""
    directory = Path(directory)
    if (directory / "ca.key").exists():
        raise PkiError("a CA already exists here; refusing to replace it", path=directory)
    (directory / "certs").mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, subject, key.public_key(), _now(now), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True,
                                     **_no_usage("key_cert_sign", "crl_sign")), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_private_file(directory / "ca.key", pem)
    (directory / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "revoked.json").write_text("{}")
    write_crl(directory, now=now)
    return cert


def issue_agent(directory: Path, agent_id: str, *, days: int = 365, from_seq: int = 1,
                now: dt.datetime | None = None) -> AgentCredentials:
    """Issue (or re-issue, rotating the signing key from `from_seq`) an agent's credentials."""
    check_agent_id(agent_id)
    directory = Path(directory)
    ca_key, ca_cert = _load_ca(directory)
    start, out = _now(now), directory / "agents" / agent_id
    out.mkdir(parents=True, exist_ok=True)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    tls_key = ec.generate_private_key(ec.SECP256R1())
    tls_cert = (
        _builder(agent_id, ca_cert.subject, tls_key.public_key(), start, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, **_no_usage()), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(tls_key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sig_key = Ed25519PrivateKey.generate()
    sig_cert = (
        _builder(agent_id, ca_cert.subject, sig_key.public_key(), start, days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(  # envelopes are evidence: non-repudiation too
            digital_signature=True, content_commitment=True, **_no_usage("content_commitment")
        ), critical=True)
        .add_extension(x509.ExtendedKeyUsage([OID_ENVELOPE_SIGNING]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(key_id(sig_key)), critical=False)
        .add_extension(x509.UnrecognizedExtension(OID_FROM_SEQ, der_uint(from_seq)), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tls_pem = tls_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    write_private_file(out / "tls.key", tls_pem)
    save_private_key(sig_key, out / "signing.key")
    for cert, name in ((tls_cert, "tls.crt"), (sig_cert, "signing.crt")):
        pem = cert.public_bytes(serialization.Encoding.PEM)
        (out / name).write_bytes(pem)
        (directory / "certs" / f"{cert.serial_number:x}.pem").write_bytes(pem)
    return AgentCredentials(agent_id, out / "tls.key", out / "tls.crt", out / "signing.key",
                            out / "signing.crt", directory / "ca.crt", key_certificate(sig_cert, ca_cert))


def revoke(directory: Path, serial_or_agent: int | str, *, now: dt.datetime | None = None,
           ) -> x509.CertificateRevocationList:
    """Revoke one certificate (by serial) or all of an agent's (by id); returns the new CRL."""
    directory = Path(directory)
    _load_ca(directory)  # fail early, before touching revoked.json, if this is no CA folder
    revoked = _revoked(directory)
    issued = [x509.load_pem_x509_certificate(p.read_bytes()) for p in (directory / "certs").glob("*.pem")]
    if isinstance(serial_or_agent, int):
        targets = [c for c in issued if c.serial_number == serial_or_agent]
    else:
        targets = [c for c in issued if _cn(c) == serial_or_agent]
    if not targets:
        raise PkiError(f"no certificate issued for {serial_or_agent!r}", path=directory)
    at = _ms(_now(now))
    for cert in targets:
        revoked.setdefault(f"{cert.serial_number:x}", at)  # the first revocation time stands
    (directory / "revoked.json").write_text(json.dumps(revoked, indent=1, sort_keys=True))
    return write_crl(directory, now=now)


def write_crl(directory: Path, *, now: dt.datetime | None = None) -> x509.CertificateRevocationList:
    """Sign a fresh crl.pem from revoked.json, valid for CRL_DAYS."""
    directory = Path(directory)
    ca_key, ca_cert = _load_ca(directory)
    start = _now(now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(start)
        .next_update(start + dt.timedelta(days=CRL_DAYS))
    )
    for serial, at_ms in sorted(_revoked(directory).items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(int(serial, 16))
            .revocation_date(dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC))
            .build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    (directory / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return crl


def _revoked(directory: Path) -> dict[str, int]:
    path = directory / "revoked.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    if not isinstance(data, dict):
        raise PkiError("revoked.json is not an object", path=path)
    return {str(k): int(v) for k, v in data.items()}


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


# -- reading a CA folder: what a relying party (the key registry) needs from it ---------------


def _read(source: Path | bytes, what: str, fix: str) -> tuple[bytes, Path | None]:
    if isinstance(source, bytes):
        return source, None
    try:
        return Path(source).read_bytes(), Path(source)
    except FileNotFoundError as exc:
        raise PkiError(f"no {what} here; {fix}", path=Path(source)) from exc


def _certificate(pem: bytes, path: Path | None) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate ({exc}); give the .crt/.pem file the CA wrote",
                       path=path) from exc


def load_certificate(source: Path | bytes) -> x509.Certificate:
    """One PEM certificate, from its file or its bytes."""
    return _certificate(*_read(source, "certificate", "check the path"))


def load_ca_certificate(directory: Path) -> x509.Certificate:
    """The CA certificate (ca.crt) of a CA folder; unlike `_load_ca`, no private key needed."""
    return _certificate(*_read(Path(directory) / "ca.crt", "CA certificate",
                               "run init_ca (wattrail pki init) first"))


def load_crl(source: Path | bytes) -> x509.CertificateRevocationList:
    """A PEM CRL, from its file (crl.pem) or its bytes. Its signature is not checked here."""
    pem, path = _read(source, "CRL", "run write_crl (or init_ca) to sign one")
    try:
        return x509.load_pem_x509_crl(pem)
    except ValueError as exc:
        raise PkiError(f"not a PEM CRL ({exc}); re-sign it with write_crl", path=path) from exc


def revocation_times(crl: x509.CertificateRevocationList) -> dict[int, int]:
    """{serial: revoked-at ms} of every certificate the CRL lists."""
    return {r.serial_number: _ms(r.revocation_date_utc) for r in crl}


def issued_certificates(directory: Path) -> list[x509.Certificate]:
    """Every certificate the CA issued (certs/*.pem), in file-name order."""
    return [load_certificate(p) for p in sorted((Path(directory) / "certs").glob("*.pem"))]


def signing_key_certificates(directory: Path) -> list[tuple[KeyCertificate, str]]:
    """Every agent signing key the CA in `directory` issued, each checked against the CA by
    `key_certificate` (raises KeyCertificateError) with its revocation time from crl.pem, and
    the certificate's PEM text. TLS certificates are skipped: the broker's business."""
    ca = load_ca_certificate(directory)
    revoked = revocation_times(load_crl(Path(directory) / "crl.pem"))
    return [(key_certificate(cert, ca, revoked.get(cert.serial_number)),
             cert.public_bytes(serialization.Encoding.PEM).decode())
            for cert in issued_certificates(directory)
            if isinstance(cert.public_key(), Ed25519PublicKey)]


# -- TLS identities of the infrastructure: the broker (server) and cloud services (clients) ---
#
#   servers/<name>/tls.key|crt      serverAuth, SubjectAltName = the names clients dial
#   services/<name>/tls.key|crt     clientAuth, CN = a reserved `wattrail-` name (the ACL's user)
#
# One CA for agents, broker and services, so the broker trusts exactly what this CA issues and
# `revoke(directory, name)` (by CN) and the CRL cover every one of them.

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a CN that is also a folder name


@dataclass(frozen=True, slots=True)
class TlsCredentials:
    name: str
    key: Path
    cert: Path
    ca_cert: Path


def _check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise PkiError(f"{what} name {name!r} must be 1-64 of A-Z a-z 0-9 . _ - "
                       "(starting with a letter or digit)")
    return name


def _issue_tls(directory: Path, folder: str, name: str, days: int, now: dt.datetime | None,
               eku: x509.ObjectIdentifier, san: list[x509.GeneralName]) -> TlsCredentials:
    directory = Path(directory)
    ca_key, ca_cert = _load_ca(directory)
    out = directory / folder / name
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(name, ca_cert.subject, key.public_key(), _now(now), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, **_no_usage()), critical=True)
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    write_private_file(out / "tls.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (out / "tls.crt").write_bytes(pem)
    (directory / "certs" / f"{cert.serial_number:x}.pem").write_bytes(pem)
    return TlsCredentials(name, out / "tls.key", out / "tls.crt", directory / "ca.crt")


def issue_server(directory: Path, name: str, *, dns_names: Sequence[str] = (),
                 ip_addresses: Sequence[str] = (), days: int = 825,
                 now: dt.datetime | None = None) -> TlsCredentials:
    """Issue (or re-issue) a TLS server certificate, e.g. the broker's: CN = `name`, serverAuth,
    SubjectAltName = `dns_names` + `ip_addresses` (clients check the name they dial against
    these; with neither given, `name` itself). Written to servers/<name>/tls.key|crt."""
    _check_name(name, "server")
    try:
        ips = [ipaddress.ip_address(a) for a in ip_addresses]
    except ValueError as exc:
        raise PkiError(f"not an IP address: {exc}") from exc
    dns = list(dns_names) or ([] if ips else [name])
    san: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    san += [x509.IPAddress(ip) for ip in ips]
    return _issue_tls(directory, "servers", name, days, now, ExtendedKeyUsageOID.SERVER_AUTH, san)


def issue_service(directory: Path, name: str, *, days: int = 365,
                  now: dt.datetime | None = None) -> TlsCredentials:
    """Issue (or re-issue) a cloud service's TLS client certificate, e.g. `wattrail-ingestor`
    for the broker's ACL. The name must carry the `wattrail-` prefix agent ids may not, so a
    service identity can never pass for an agent. Written to services/<name>/tls.key|crt."""
    _check_name(name, "service")
    if not name.casefold().startswith(RESERVED_PREFIX):
        raise PkiError(f"service name {name!r} must start with {RESERVED_PREFIX!r} "
                       "(the prefix agent ids may not use)")
    return _issue_tls(directory, "services", name, days, now, ExtendedKeyUsageOID.CLIENT_AUTH, [])


def init_log_key(directory: Path) -> tuple[Path, bytes]:
    """Create the transparency log's Ed25519 key (log.key 0600) and log.pub; refuses to replace
    an existing key. Returns (log.key path, key id)."""
    directory = Path(directory)
    path = directory / "log.key"
    if path.exists():
        raise PkiError("a log key exists; a log key is never replaced silently", path=path)
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    save_private_key(key, path)
    (directory / "log.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path, key_id(key)
