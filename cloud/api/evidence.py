"""The audit trail's reads: an envelope re-verified against the key registry, the log's leaves
and signed heads, and proofs built from them.

Re-verification runs `security.verify.verify_envelope` (the same verdict the ingestor trusts)
on the stored bytes, with a keyring of the agent's registered keys and a chain seeded with
the stored predecessor's hash, so `ok` means: signed by a key valid for it then, and linked
to the envelope before it. The keyring is read here with the async driver; it mirrors
`cloud.ingest.writer.load_keyring` (which takes a sync connection).

Proofs are built from the leaf hashes in `tlog_leaves` with `security.merkle`: O(tree size)
per proof, run in a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

import psycopg

from cloud.api.listing import one, rows
from cloud.store import envelopes_sql
from security.chain import ChainState
from security.keyring import KeyCertificate, Keyring
from security.merkle import consistency_proof, inclusion_proof
from security.verify import STORABLE, Verdict, verify_envelope

_FAR_FUTURE_MS = 253_402_300_799_000  # 9999-12-31, as cloud/ingest/writer.py: no valid_to = open

_KEYS = ("SELECT agent_id, key_id, public_key, "
         "(extract(epoch FROM valid_from) * 1000)::bigint AS valid_from_ms, "
         "(extract(epoch FROM valid_to) * 1000)::bigint AS valid_to_ms, from_seq, "
         "(extract(epoch FROM revoked_at) * 1000)::bigint AS revoked_at_ms "
         "FROM agent_keys WHERE agent_id = %s ORDER BY from_seq")


async def keyring_for(conn: psycopg.AsyncConnection[Any], agent_id: str) -> Keyring:
    return Keyring(
        KeyCertificate(r["agent_id"], bytes(r["key_id"]), bytes(r["public_key"]), r["valid_from_ms"],
                       r["valid_to_ms"] if r["valid_to_ms"] is not None else _FAR_FUTURE_MS,
                       max(1, r["from_seq"]), r["revoked_at_ms"])
        for r in await rows(conn, _KEYS, [agent_id]))


@dataclass(frozen=True, slots=True)
class Reverified:
    verdict: Verdict
    stored_hash_ok: bool  # SHA-256 of the stored bytes is the sha256 stored beside them
    predecessor_stored: bool


async def reverify(conn: psycopg.AsyncConnection[Any], agent_id: str, seq: int, raw: bytes,
                   stored_sha256: bytes, keyring: Keyring | None = None, *,
                   received_at_ms: int | None = None) -> Reverified:
    """`received_at_ms`: the stored receipt time; a key revoked before it is `revoked_key` now,
    even if the envelope was stored `ok` (it arrived before the registry heard of the revocation,
    or claims an earlier sent-at)."""
    ring = keyring if keyring is not None else await keyring_for(conn, agent_id)
    chain = ChainState()
    # seed with the nearest stored predecessor: then a gap reports exactly the seqs missing
    # between it and this one, and a direct predecessor checks the prev-hash link
    prev = await one(conn, envelopes_sql.PREDECESSOR, [agent_id, seq])
    if prev is not None:
        chain.seed(agent_id, int(prev["seq"]), bytes(prev["sha256"]))
    verdict = verify_envelope(raw, ring, chain, received_at_ms=received_at_ms)
    return Reverified(verdict, hashlib.sha256(raw).digest() == stored_sha256,
                      seq == 1 or (prev is not None and prev["seq"] == seq - 1))


def signature_ok(v: Verdict) -> bool:
    """Passed decoding, key lookup, signature and key validity (steps 1-5 of verify)."""
    return v.status in STORABLE or v.status.value in ("replay", "conflict")



async def leaf_hashes(conn: psycopg.AsyncConnection[Any], size: int) -> list[bytes]:
    async with conn.cursor() as cur:
        await cur.execute("SELECT leaf_hash FROM tlog_leaves WHERE idx < %s ORDER BY idx", [size])
        found = [bytes(r[0]) for r in await cur.fetchall()]
    if len(found) != size:
        # heads are signed over leaves already stored, so this is our state, not the request
        raise RuntimeError(f"the log holds {len(found)} leaves below a signed size {size}")
    return found


async def inclusion_paths(leaves: list[bytes], indexes: list[int]) -> list[list[bytes]]:
    return await asyncio.to_thread(lambda: [inclusion_proof(i, leaves) for i in indexes])


async def consistency_path(leaves: list[bytes], first: int) -> list[bytes]:
    return await asyncio.to_thread(consistency_proof, first, leaves)
