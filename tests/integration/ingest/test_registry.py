from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from cloud.ingest.registry import register_from_pki
from cloud.ingest.writer import load_keyring
from cloud.store.migrate import migrate
from security.pki import init_ca, issue_agent, revoke

pytestmark = pytest.mark.integration


def test_register_keys_from_the_pki_keeps_revocations(db_dsn: str, tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    init_ca(pki)
    a = issue_agent(pki, "tx-1")
    b = issue_agent(pki, "tx-2")
    revoke(pki, "tx-2")
    with psycopg.connect(db_dsn) as conn:
        migrate(conn)
        done = register_from_pki(conn, pki)
        assert sorted(done) == sorted([("tx-1", a.key_cert.kid.hex()),
                                       ("tx-2", b.key_cert.kid.hex())])
        assert register_from_pki(conn, pki) == done, "registering twice changes nothing"
        ring = load_keyring(conn)
        one = ring.get("tx-1", a.key_cert.kid)
        two = ring.get("tx-2", b.key_cert.kid)
        assert one is not None and one.revoked_at_ms is None
        assert two is not None and two.revoked_at_ms is not None
        pem = conn.execute("SELECT certificate_pem FROM agent_keys WHERE agent_id = 'tx-1'"
                           ).fetchone()
        assert pem is not None and pem[0].startswith("-----BEGIN CERTIFICATE-----")
