"""Signed tree heads: the log operator's Ed25519 signature over (size, time, root).

The signed bytes follow RFC 6962 §3.5's TreeHeadSignature, so existing CT tooling reads them:

    offset  size  field
    0       1     version         0x00 (v1)
    1       1     signature_type  0x01 (tree_hash)
    2       8     timestamp       ms since the Unix epoch, UTC, big-endian uint64
    10      8     tree_size       number of leaves, big-endian uint64
    18      32    root_hash       RFC 9162 MTH of the leaves
    = 50 bytes

The leading 0x00 also keeps these bytes apart from every envelope Sig_structure (which starts
0x84, a CBOR array), so a key used for both could never have one signature serve as the other.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from security.keys import key_id
from security.merkle import HASH_LEN

_LAYOUT = struct.Struct(">BBQQ32s")
VERSION_V1 = 0
SIGNATURE_TYPE_TREE_HASH = 1


@dataclass(frozen=True, slots=True)
class TreeHead:
    tree_size: int
    timestamp_ms: int
    root_hash: bytes

    def to_be_signed(self) -> bytes:
        if len(self.root_hash) != HASH_LEN:
            raise ValueError(f"root hash must be {HASH_LEN} bytes")
        if not (0 <= self.tree_size < 1 << 64 and 0 <= self.timestamp_ms < 1 << 64):
            raise ValueError("tree size and timestamp must fit an unsigned 64-bit integer")
        return _LAYOUT.pack(VERSION_V1, SIGNATURE_TYPE_TREE_HASH, self.timestamp_ms, self.tree_size,
                            self.root_hash)


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    head: TreeHead
    kid: bytes  # which log key signed; same derivation as agent key ids
    signature: bytes


def sign_tree_head(key: Ed25519PrivateKey, head: TreeHead) -> SignedTreeHead:
    return SignedTreeHead(head, key_id(key), key.sign(head.to_be_signed()))


def verify_tree_head(sth: SignedTreeHead, public_key: Ed25519PublicKey) -> bool:
    """True only if `public_key` is the one named by `sth.kid` and it signed exactly this head."""
    if sth.kid != key_id(public_key):
        return False
    try:
        public_key.verify(sth.signature, sth.head.to_be_signed())
    except (InvalidSignature, ValueError):
        return False
    return True
