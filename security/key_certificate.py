"""X.509 key certificates <-> `KeyCertificate`, and the keyring a CA folder vouches for.

An Ed25519 key certificate (see security/pki.py) is turned into a `KeyCertificate` only after
its CA signature, its extended key usage and its key id check out, so a keyring built here
holds nothing the CA did not sign. Revocation times come from the CA-signed crl.pem.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from security.keyring import KeyCertificate, Keyring
from security.keys import key_id, raw_public_key

OID_FROM_SEQ = x509.ObjectIdentifier("2.25.159603044673867902677778880341013076533")
OID_ENVELOPE_SIGNING = x509.ObjectIdentifier("2.25.293024012431728592003424178351316101898")


class KeyCertificateError(ValueError):
    """A certificate that is not a valid Wattrail key certificate from this CA."""

    def __init__(self, message: str, *, serial: int) -> None:
        self.serial = serial
        super().__init__(f"{message} [serial {serial:x}]")


def der_uint(n: int) -> bytes:
    """DER INTEGER for a non-negative n below 2**63 (the from_seq extension's value)."""
    if not 0 <= n < 1 << 63:
        raise ValueError(f"{n} does not fit the from_seq extension")
    body = n.to_bytes(n.bit_length() // 8 + 1, "big")  # minimal, with a clear sign bit
    if len(body) > 1 and body[0] == 0 and body[1] < 0x80:
        body = body[1:]
    return bytes([0x02, len(body)]) + body


def _parse_der_uint(der: bytes) -> int | None:
    if len(der) < 3 or der[0] != 0x02 or der[1] != len(der) - 2 or der[1] > 8:
        return None
    value = int.from_bytes(der[2:], "big", signed=True)
    return value if value >= 0 else None


def key_certificate(cert: x509.Certificate, ca_cert: x509.Certificate,
                    revoked_at_ms: int | None = None) -> KeyCertificate:
    """Check `cert` is a key certificate issued by `ca_cert` and extract its binding."""
    serial = cert.serial_number
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise KeyCertificateError(f"not issued by this CA ({exc})", serial=serial) from exc
    public = cert.public_key()
    if not isinstance(public, Ed25519PublicKey):
        raise KeyCertificateError("not an Ed25519 key certificate", serial=serial)
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        ext = cert.extensions.get_extension_for_oid(OID_FROM_SEQ).value
    except x509.ExtensionNotFound as exc:
        raise KeyCertificateError(f"missing extension ({exc})", serial=serial) from exc
    if OID_ENVELOPE_SIGNING not in eku:
        raise KeyCertificateError("not issued for envelope signing", serial=serial)
    if ski != key_id(public):
        raise KeyCertificateError("SubjectKeyIdentifier is not the key id", serial=serial)
    from_seq = _parse_der_uint(ext.value) if isinstance(ext, x509.UnrecognizedExtension) else None
    if from_seq is None or from_seq < 1:
        raise KeyCertificateError("from_seq extension is not a positive DER INTEGER", serial=serial)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cn) != 1:
        raise KeyCertificateError("subject needs exactly one CN (the agent id)", serial=serial)
    return KeyCertificate(
        agent_id=str(cn[0].value),
        kid=ski,
        public_key=raw_public_key(public),
        valid_from_ms=int(cert.not_valid_before_utc.timestamp() * 1000),
        valid_to_ms=int(cert.not_valid_after_utc.timestamp() * 1000),
        from_seq=from_seq,
        revoked_at_ms=revoked_at_ms,
    )


def load_keyring(directory: Path) -> Keyring:
    """Every key certificate in a CA folder, with revocation times from its signed CRL."""
    directory = Path(directory)
    ca_cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    crl = x509.load_pem_x509_crl((directory / "crl.pem").read_bytes())
    ca_public = ca_cert.public_key()
    if not isinstance(ca_public, ec.EllipticCurvePublicKey) or not crl.is_signature_valid(ca_public):
        raise KeyCertificateError("crl.pem is not signed by this CA", serial=0)
    revoked = {r.serial_number: int(r.revocation_date_utc.timestamp() * 1000) for r in crl}
    keyring = Keyring()
    for path in sorted((directory / "certs").glob("*.pem")):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        if isinstance(cert.public_key(), Ed25519PublicKey):
            keyring.add(key_certificate(cert, ca_cert, revoked.get(cert.serial_number)))
    return keyring
