"""Signing keys on disk, key ids, envelope signing, and signed tree heads."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.envelope import decode_sign1, sig_structure
from security.keys import (
    KeyFileError,
    generate_key,
    key_id,
    load_private_key,
    raw_public_key,
    save_private_key,
    sign_envelope,
)
from security.merkle import leaf_hash, root_hash
from security.tree_head import SignedTreeHead, TreeHead, sign_tree_head, verify_tree_head

from .envelopes import key_from_byte


def test_key_id_is_truncated_sha256_of_raw_public_key():
    key = key_from_byte(7)
    raw = raw_public_key(key)
    assert len(raw) == 32 and key_id(key) == hashlib.sha256(raw).digest()[:16]
    assert key_id(key.public_key()) == key_id(raw) == key_id(key)
    with pytest.raises(ValueError, match="32 bytes"):
        key_id(raw[:31])


def test_save_and_load_with_0600(tmp_path):
    key = generate_key()
    path = tmp_path / "signing.key"
    old_umask = os.umask(0)  # even a permissive umask must not loosen the file
    try:
        save_private_key(key, path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert raw_public_key(load_private_key(path)) == raw_public_key(key)
    save_private_key(generate_key(), path)  # overwrite: still 0600, no temp file left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_load_refuses_loose_permissions_and_other_keys(tmp_path):
    path = tmp_path / "k.pem"
    save_private_key(generate_key(), path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_private_key(path)
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="PEM"):
        load_private_key(path)


def test_sign_envelope_produces_a_verifiable_sign1():
    key = key_from_byte(1)
    data = sign_envelope(key, key_id(key), b"\xa0")
    s = decode_sign1(data)
    assert s.kid == key_id(key) and s.payload == b"\xa0"
    key.public_key().verify(s.signature, sig_structure(s.protected, s.payload))  # raises if wrong
    assert sign_envelope(key, key_id(key), b"\xa0") == data  # Ed25519 is deterministic
    with pytest.raises(ValueError, match="kid"):
        sign_envelope(key, key_id(key_from_byte(2)), b"\xa0")


HEAD = TreeHead(tree_size=3, timestamp_ms=1_700_000_000_000,
                root_hash=root_hash([leaf_hash(b) for b in (b"a", b"b", b"c")]))


def test_tree_head_layout_is_rfc6962_tree_head_signature():
    tbs = HEAD.to_be_signed()
    assert len(tbs) == 50
    assert tbs[:2] == b"\x00\x01"
    assert tbs[2:10] == (1_700_000_000_000).to_bytes(8, "big")
    assert tbs[10:18] == (3).to_bytes(8, "big")
    assert tbs[18:] == HEAD.root_hash


def test_signed_tree_head_verifies_and_detects_tampering():
    key = key_from_byte(5)
    sth = sign_tree_head(key, HEAD)
    assert verify_tree_head(sth, key.public_key())
    for forged in (
        SignedTreeHead(TreeHead(4, HEAD.timestamp_ms, HEAD.root_hash), sth.kid, sth.signature),
        SignedTreeHead(TreeHead(3, HEAD.timestamp_ms + 1, HEAD.root_hash), sth.kid, sth.signature),
        SignedTreeHead(TreeHead(3, HEAD.timestamp_ms, bytes(32)), sth.kid, sth.signature),
        SignedTreeHead(HEAD, sth.kid, bytes(64)),
        SignedTreeHead(TreeHead(3, HEAD.timestamp_ms, b"short"), sth.kid, sth.signature),
    ):
        assert not verify_tree_head(forged, key.public_key())
    assert not verify_tree_head(sth, key_from_byte(6).public_key())  # another log's key


def test_tree_head_refuses_out_of_range_values():
    with pytest.raises(ValueError, match="64-bit"):
        TreeHead(-1, 0, bytes(32)).to_be_signed()
    with pytest.raises(ValueError, match="32 bytes"):
        sign_tree_head(Ed25519PrivateKey.generate(), TreeHead(1, 0, b"x"))
