"""A plain bottom-up Merkle tree, independent of security/merkle.py's recursive split.

RFC 6962's tree equals pairing nodes level by level and promoting an unpaired last node
unchanged; proofs here are read off the stored levels instead of recomputed subtrees.
"""

from __future__ import annotations

import hashlib


def levels(leaf_hashes: list[bytes]) -> list[list[bytes]]:
    out = [list(leaf_hashes)]
    while len(out[-1]) > 1:
        cur = out[-1]
        nxt = [hashlib.sha256(b"\x01" + cur[i] + cur[i + 1]).digest() for i in range(0, len(cur) - 1, 2)]
        if len(cur) % 2:
            nxt.append(cur[-1])
        out.append(nxt)
    return out


def root(leaf_hashes: list[bytes]) -> bytes:
    if not leaf_hashes:
        return hashlib.sha256(b"").digest()
    return levels(leaf_hashes)[-1][0]


def audit_path(index: int, leaf_hashes: list[bytes]) -> list[bytes]:
    path = []
    for level in levels(leaf_hashes)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index //= 2
    return path
