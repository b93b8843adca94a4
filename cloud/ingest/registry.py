"""Register agents' signing keys from a PKI folder into the database registry.

Each key certificate is checked against the CA (signature, extended key usage, key id) by
`security.key_certificate` before it is trusted; revocations come from the CA's signed CRL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloud.ingest.writer import register_key
from security.key_certificate import key_certificate


def register_from_pki(conn: psycopg.Connection[Any], pki_dir: Path) -> list[tuple[str, str]]:
    """Register every signing key the CA in `pki_dir` issued. Returns (agent id, key id hex)."""
    ca = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    crl = x509.load_pem_x509_crl((pki_dir / "crl.pem").read_bytes())
    revoked = {r.serial_number: int(r.revocation_date_utc.timestamp() * 1000) for r in crl}
    done: list[tuple[str, str]] = []
    with conn.transaction():
        for path in sorted((pki_dir / "certs").glob("*.pem")):
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            if not isinstance(cert.public_key(), Ed25519PublicKey):
                continue  # a TLS certificate: the broker's business, not the registry's
            kc = key_certificate(cert, ca, revoked.get(cert.serial_number))
            register_key(conn, kc, cert.public_bytes(serialization.Encoding.PEM).decode())
            done.append((kc.agent_id, kc.kid.hex()))
    return done
