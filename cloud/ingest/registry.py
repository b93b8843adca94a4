"""Register agents' signing keys from a PKI folder into the database registry.

Reading the CA folder is `security.pki.signing_key_certificates`: each key certificate is
checked against the CA (signature, extended key usage, key id) by `security.key_certificate`
before it is trusted; revocations come from the CA's CRL. This module only writes the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from cloud.ingest.writer import register_key
from security.pki import signing_key_certificates


def register_from_pki(conn: psycopg.Connection[Any], pki_dir: Path) -> list[tuple[str, str]]:
    """Register every signing key the CA in `pki_dir` issued. Returns (agent id, key id hex)."""
    # every certificate is read and checked before the first write: a bad one changes nothing
    keys = signing_key_certificates(pki_dir)
    done: list[tuple[str, str]] = []
    with conn.transaction():
        for kc, pem in keys:
            register_key(conn, kc, pem)
            done.append((kc.agent_id, kc.kid.hex()))
    return done
