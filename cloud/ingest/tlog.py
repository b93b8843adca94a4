"""The transparency log: every stored envelope becomes a leaf of an RFC 9162 Merkle tree, and
signed tree heads are published at a fixed cadence, so an auditor can prove that a reading's
envelope is in the log (inclusion) and that the log only ever grew (consistency).

One sequencer at a time (an advisory lock; any ingestor may be it) appends the envelopes not
yet logged, in (received_at, agent, seq) order, and keeps the tree's frontier in `tlog_state`
in the same transaction, so leaf indexes are gap-free and survive crashes. The Merkle maths is
`security.merkle` / `security.merkle_frontier`; this module is the database shell around it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.store import envelopes_sql
from security.merkle import consistency_proof as _consistency
from security.merkle import inclusion_proof, leaf_hash
from security.merkle_frontier import Frontier
from security.tree_head import SignedTreeHead, TreeHead, sign_tree_head

_LOCK = 0x746C6F67  # "tlog"


class LogRangeError(ValueError):
    """A proof was asked for beyond what the log holds: the caller's input, not our state."""


@dataclass(frozen=True)
class StoredHead:
    tree_size: int
    timestamp_ms: int
    root_hash: bytes
    signature: bytes
    key_id: bytes


def append_pending(conn: psycopg.Connection[Any], limit: int = 10_000) -> int:
    """Log up to `limit` stored envelopes not logged yet; returns how many were appended."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
        row = conn.execute("SELECT size, frontier FROM tlog_state FOR UPDATE").fetchone()
        assert row is not None, "migration 0021 creates the tlog_state row"
        frontier = Frontier.from_list(row[1])
        if frontier.size != row[0]:
            raise RuntimeError(f"tlog_state is inconsistent: size {row[0]} vs frontier "
                               f"{frontier.size}; restore it from tlog_leaves")
        pending = conn.execute(envelopes_sql.UNLOGGED, [limit]).fetchall()
        if not pending:
            return 0
        leaves = []
        for agent_id, seq, raw in pending:
            h = leaf_hash(bytes(raw))
            leaves.append((frontier.append(h), agent_id, seq, h))
        with conn.cursor() as cur:
            with cur.copy("COPY tlog_leaves (idx, agent_id, seq, leaf_hash) FROM STDIN") as cp:
                for item in leaves:
                    cp.write_row(item)
            cur.execute(envelopes_sql.SET_LOG_INDEX_FROM_LEAVES)
        conn.execute("UPDATE tlog_state SET size = %s, frontier = %s",
                     [frontier.size, json.dumps(frontier.to_list())])
        return len(leaves)


def sign_head(conn: psycopg.Connection[Any], key: Ed25519PrivateKey,
              now_ms: int | None = None) -> StoredHead | None:
    """Sign and store a head for the current tree if it grew since the last one."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
        row = conn.execute("SELECT size, frontier FROM tlog_state").fetchone()
        assert row is not None
        last = conn.execute("SELECT max(tree_size) FROM tlog_tree_heads").fetchone()
        if last is not None and last[0] is not None and last[0] >= row[0]:
            return None
        head = TreeHead(int(row[0]), now_ms if now_ms is not None else time.time_ns() // 10**6,
                        Frontier.from_list(row[1]).root())
        sth = sign_tree_head(key, head)
        conn.execute(
            "INSERT INTO tlog_tree_heads (tree_size, timestamp_ms, root_hash, signature, key_id) "
            "VALUES (%s, %s, %s, %s, %s)",
            [head.tree_size, head.timestamp_ms, head.root_hash, sth.signature, sth.kid])
    return _stored(sth)


def _stored(sth: SignedTreeHead) -> StoredHead:
    h = sth.head
    return StoredHead(h.tree_size, h.timestamp_ms, h.root_hash, sth.signature, sth.kid)


def latest_head(conn: psycopg.Connection[Any]) -> StoredHead | None:
    row = conn.execute("SELECT tree_size, timestamp_ms, root_hash, signature, key_id "
                       "FROM tlog_tree_heads ORDER BY tree_size DESC LIMIT 1").fetchone()
    return None if row is None else StoredHead(int(row[0]), int(row[1]), bytes(row[2]),
                                                bytes(row[3]), bytes(row[4]))


def _leaves(conn: psycopg.Connection[Any], size: int) -> list[bytes]:
    rows = conn.execute("SELECT leaf_hash FROM tlog_leaves WHERE idx < %s ORDER BY idx",
                        [size]).fetchall()
    if len(rows) != size:
        raise LogRangeError(f"the log holds {len(rows)} leaves, not {size}")
    return [bytes(r[0]) for r in rows]


def inclusion(conn: psycopg.Connection[Any], index: int, tree_size: int) -> list[bytes]:
    """Audit path for leaf `index` in the tree of `tree_size` leaves."""
    if not 0 <= index < tree_size:
        raise LogRangeError(f"leaf {index} is not in a tree of {tree_size} leaves")
    return inclusion_proof(index, _leaves(conn, tree_size))


def consistency(conn: psycopg.Connection[Any], old_size: int, new_size: int) -> list[bytes]:
    if not 0 < old_size <= new_size:
        raise LogRangeError(f"need 0 < old size <= new size, got {old_size}, {new_size}")
    return _consistency(old_size, _leaves(conn, new_size))
