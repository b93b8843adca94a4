"""The transparency log over stored envelopes: gap-free leaves, signed heads, and proofs an
auditor verifies with nothing but the envelope bytes and the log's public key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.ingest.classify import Incoming, classify
from cloud.ingest.tlog import LogRangeError, append_pending, consistency, inclusion, sign_head
from cloud.ingest.writer import load_keyring, register_key, store_batch
from cloud.store.migrate import migrate
from security.merkle import leaf_hash, verify_consistency, verify_inclusion
from security.tree_head import SignedTreeHead, TreeHead, verify_tree_head
from tests.unit.security.envelopes import T0, Agent, cert_for, key_from_byte

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_dsn) as c:
        migrate(c)
        yield c


def ingest(conn: psycopg.Connection[Any], agent: Agent, n: int) -> list[bytes]:
    envs = [agent.envelope() for _ in range(n)]
    ring = load_keyring(conn)
    store_batch(conn, [classify(Incoming(f"wattrail/v1/{agent.agent_id}/readings", e, i, T0), ring)
                       for i, e in enumerate(envs)])
    return envs


def test_log_heads_and_proofs(conn: psycopg.Connection[Any]) -> None:
    a, b = Agent("tx-a", key_from_byte(1)), Agent("tx-b", key_from_byte(2))
    with conn.transaction():
        register_key(conn, cert_for(a.key, a.agent_id))
        register_key(conn, cert_for(b.key, b.agent_id))
    log_key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    envs = ingest(conn, a, 5) + ingest(conn, b, 4)
    assert append_pending(conn) == 9
    assert append_pending(conn) == 0, "appending is idempotent"
    first = sign_head(conn, log_key, now_ms=T0)
    assert first is not None and first.tree_size == 9
    assert sign_head(conn, log_key, now_ms=T0 + 1) is None, "no new head for an unchanged tree"
    sth = SignedTreeHead(TreeHead(first.tree_size, first.timestamp_ms, first.root_hash),
                         first.key_id, first.signature)
    assert verify_tree_head(sth, log_key.public_key())

    index = {bytes(r[0]): int(r[1]) for r in conn.execute(
        "SELECT raw, log_index FROM envelopes").fetchall()}
    assert sorted(index.values()) == list(range(9)), "leaf indexes are gap-free"
    for env in envs:
        i = index[env]
        proof = inclusion(conn, i, 9)
        assert verify_inclusion(i, 9, leaf_hash(env), proof, first.root_hash)
        assert not verify_inclusion(i, 9, leaf_hash(env + b"x"), proof, first.root_hash)

    ingest(conn, a, 3)
    assert append_pending(conn) == 3
    second = sign_head(conn, log_key, now_ms=T0 + 2)
    assert second is not None and second.tree_size == 12
    proof = consistency(conn, 9, 12)
    assert verify_consistency(9, 12, first.root_hash, second.root_hash, proof)
    assert not verify_consistency(9, 12, second.root_hash, first.root_hash, proof)
    with pytest.raises(LogRangeError):
        inclusion(conn, 12, 12)
    with pytest.raises(LogRangeError):
        consistency(conn, 9, 13)
