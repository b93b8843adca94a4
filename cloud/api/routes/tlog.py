"""The transparency log (auditor, admin): signed tree heads, inclusion proofs for envelopes,
consistency proofs between heads. RFC 9162 hashing (docs/wire-format.md §5).

Proofs are only given against *signed* tree sizes: a proof is worth something only next to a
root the log operator signed, so each answer carries that signed head, and verifying needs
nothing but the response, the envelope bytes and the log's public key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from cloud.api.deps import AuditorToken, ConnDep
from cloud.api.evidence import consistency_path, inclusion_paths, leaf_hashes
from cloud.api.listing import keyset_page, one
from cloud.api.params import FormatParam, PageDep
from cloud.api.problems import ProblemError, responses
from cloud.api.tabular import CSV_RESPONSE, Page, page_or_csv
from cloud.store import envelopes_sql
from security.tree_head import TreeHead

router = APIRouter(prefix="/v1/audit", tags=["transparency log"])
_ERR = responses(401, 403, 404, 409, 422, 429)
Size = Annotated[int, Query(ge=1, le=2**63 - 1)]


class TreeHeadPublic(BaseModel):
    tree_size: int
    timestamp_ms: int
    timestamp: datetime
    root_hash: str = Field(description="hex RFC 9162 Merkle tree hash")
    key_id: str = Field(description="hex key id of the log key that signed")
    signature: str = Field(description="hex Ed25519 signature over signed_bytes")
    signed_bytes: str = Field(description="hex of the 50 signed bytes (RFC 6962 §3.5 layout)")


def head_public(r: dict[str, Any]) -> TreeHeadPublic:
    root = bytes(r["root_hash"])
    return TreeHeadPublic(
        tree_size=r["tree_size"], timestamp_ms=r["timestamp_ms"],
        timestamp=datetime.fromtimestamp(r["timestamp_ms"] / 1000, UTC), root_hash=root.hex(),
        key_id=bytes(r["key_id"]).hex(), signature=bytes(r["signature"]).hex(),
        signed_bytes=TreeHead(r["tree_size"], r["timestamp_ms"], root).to_be_signed().hex())


_HEAD = "SELECT tree_size, timestamp_ms, root_hash, key_id, signature FROM tlog_tree_heads"


async def latest_head(conn: ConnDep) -> dict[str, Any]:
    r = await one(conn, _HEAD + " ORDER BY tree_size DESC LIMIT 1")
    if r is None:
        raise ProblemError(404, "the log has no signed tree head yet (the ingestor signs one at "
                           "its cadence once envelopes are logged)", kind="no-tree-head")
    return r


async def head_of_size(conn: ConnDep, size: int) -> dict[str, Any]:
    r = await one(conn, _HEAD + " WHERE tree_size = %s", [size])
    if r is None:
        raise ProblemError(404, f"no signed tree head of size {size}; list them at "
                           "/v1/audit/log/tree-heads", kind="no-tree-head")
    return r


@router.get("/log/tree-head", response_model=TreeHeadPublic, responses=_ERR)
async def get_latest_head(conn: ConnDep, _t: AuditorToken) -> TreeHeadPublic:
    return head_public(await latest_head(conn))


@router.get("/log/tree-heads", response_model=Page[TreeHeadPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_heads(request: Request, conn: ConnDep, _t: AuditorToken, page: PageDep,
                     fmt: FormatParam = None) -> Page[TreeHeadPublic] | Response:
    found, nxt = await keyset_page(conn, kind="tree-heads", select=_HEAD + " h", where=[], params=[],
                                   key=["h.tree_size"], key_types=(int,), cursor=page.cursor,
                                   limit=page.limit)
    return page_or_csv(request, fmt, TreeHeadPublic, [head_public(r) for r in found], nxt)


class InclusionProof(BaseModel):
    agent_id: str
    seq: int
    leaf_index: int
    leaf_hash: str = Field(description="hex SHA-256(0x00 || envelope bytes)")
    tree_size: int
    audit_path: list[str] = Field(description="hex hashes, leaf to root (RFC 9162 §2.1.3)")
    tree_head: TreeHeadPublic


@router.get("/envelopes/{agent_id}/{seq}/inclusion", response_model=InclusionProof, responses=_ERR)
async def inclusion(
    agent_id: Annotated[str, Path(min_length=1, max_length=200)],
    seq: Annotated[int, Path(ge=1, le=2**63 - 1)], conn: ConnDep, _t: AuditorToken,
    tree_size: Annotated[int | None, Query(ge=1, le=2**63 - 1,
                                           description="a signed size; default the latest")] = None,
) -> InclusionProof:
    leaf = await one(conn, envelopes_sql.LEAF_AT, [agent_id, seq])
    if leaf is None:
        stored = await one(conn, envelopes_sql.IS_STORED, [agent_id, seq])
        if stored is None:
            raise ProblemError(404, f"no stored envelope {seq} of agent {agent_id!r}", kind="not-found")
        raise ProblemError(409, "the envelope is stored but not in the log yet; retry after the "
                           "next tree head", kind="not-logged-yet", headers={"Retry-After": "30"})
    head = await (latest_head(conn) if tree_size is None else head_of_size(conn, tree_size))
    index, size = int(leaf["idx"]), int(head["tree_size"])
    if index >= size:
        raise ProblemError(409, f"the envelope is leaf {index}, after tree size {size}; ask for a "
                           "later signed head", kind="not-in-tree")
    [path] = await inclusion_paths(await leaf_hashes(conn, size), [index])
    return InclusionProof(agent_id=agent_id, seq=seq, leaf_index=index,
                          leaf_hash=bytes(leaf["leaf_hash"]).hex(), tree_size=size,
                          audit_path=[p.hex() for p in path], tree_head=head_public(head))


class ConsistencyProof(BaseModel):
    first: TreeHeadPublic
    second: TreeHeadPublic
    proof: list[str] = Field(description="hex hashes (RFC 9162 §2.1.4); empty when sizes are equal")


@router.get("/log/consistency", response_model=ConsistencyProof, responses=_ERR)
async def consistency(conn: ConnDep, _t: AuditorToken, first: Size,
                      second: Annotated[int | None, Query(ge=1, le=2**63 - 1,
                                                          description="default the latest")] = None,
                      ) -> ConsistencyProof:
    if second is not None and first > second:
        raise ProblemError(422, f"first ({first}) must not be larger than second ({second})",
                           kind="bad-tree-sizes")
    old = await head_of_size(conn, first)
    new = await (latest_head(conn) if second is None else head_of_size(conn, second))
    if first > new["tree_size"]:
        raise ProblemError(422, f"first ({first}) is larger than the latest head ({new['tree_size']})",
                           kind="bad-tree-sizes")
    proof = await consistency_path(await leaf_hashes(conn, int(new["tree_size"])), first)
    return ConsistencyProof(first=head_public(old), second=head_public(new), proof=[p.hex() for p in proof])
