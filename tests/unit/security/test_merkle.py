"""RFC 9162 Merkle trees: roots against a naive tree, proofs for every (m, n) up to 64."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from security.merkle import (
    EMPTY_ROOT,
    MerkleError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

from . import naive_merkle as naive

N = 64
LEAVES = [leaf_hash(f"envelope {i}".encode()) for i in range(N)]
ROOTS = [root_hash(LEAVES[:n]) for n in range(N + 1)]


def test_hash_prefixes_separate_leaves_from_nodes():
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    assert root_hash([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    # the RFC 6962 empty-tree root, as CT logs publish it
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_known_three_leaf_tree():
    a, b, c = (leaf_hash(x) for x in (b"a", b"b", b"c"))
    assert root_hash([a, b, c]) == node_hash(node_hash(a, b), c)  # split at 2, not at 1


@given(st.lists(st.binary(max_size=8), max_size=80))
def test_root_matches_naive_tree(data):
    hashes = [leaf_hash(d) for d in data]
    assert root_hash(hashes) == naive.root(hashes)


@pytest.mark.parametrize("n", range(1, N + 1))
def test_inclusion_proofs_for_every_leaf(n):
    for i in range(n):
        proof = inclusion_proof(i, LEAVES[:n])
        assert proof == naive.audit_path(i, LEAVES[:n])
        assert verify_inclusion(i, n, LEAVES[i], proof, ROOTS[n])
        assert not verify_inclusion(i, n, leaf_hash(b"not in the log"), proof, ROOTS[n])
        if i + 1 < n:
            assert not verify_inclusion(i + 1, n, LEAVES[i], proof, ROOTS[n])  # wrong position
        if proof:
            tampered = [*proof[:-1], bytes([proof[-1][0] ^ 1]) + proof[-1][1:]]
            assert not verify_inclusion(i, n, LEAVES[i], tampered, ROOTS[n])
            assert not verify_inclusion(i, n, LEAVES[i], proof[:-1], ROOTS[n])
        assert not verify_inclusion(i, n, LEAVES[i], [*proof, LEAVES[0]], ROOTS[n])
        assert not verify_inclusion(n, n, LEAVES[i], proof, ROOTS[n])  # index outside the tree


@pytest.mark.parametrize("n", range(0, N + 1))
def test_consistency_proofs_for_every_prefix(n):
    for m in range(0, n + 1):
        proof = consistency_proof(m, LEAVES[:n])
        assert verify_consistency(m, n, ROOTS[m], ROOTS[n], proof), (m, n)
        if 0 < m < n:
            assert proof, (m, n)
            for k in range(len(proof)):  # any one tampered hash breaks it
                tampered = list(proof)
                tampered[k] = bytes([tampered[k][0] ^ 0x80]) + tampered[k][1:]
                assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], tampered), (m, n, k)
            assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], proof[:-1])
            assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], [*proof, ROOTS[0]])
            assert not verify_consistency(m, n, ROOTS[m - 1], ROOTS[n], proof)  # wrong old root
            assert not verify_consistency(m, n, ROOTS[m], ROOTS[n - 1], proof)  # wrong new root


def test_a_rewritten_history_is_inconsistent():
    forked = [*LEAVES[:10], leaf_hash(b"forged"), *LEAVES[11:20]]
    proof = consistency_proof(12, forked)
    assert not verify_consistency(12, 20, ROOTS[12], root_hash(forked), proof)


def test_trivial_and_impossible_consistency():
    assert consistency_proof(0, LEAVES[:5]) == [] and consistency_proof(5, LEAVES[:5]) == []
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    assert not verify_consistency(0, 5, ROOTS[1], ROOTS[5], [])
    assert not verify_consistency(5, 5, ROOTS[5], ROOTS[4], [])
    assert not verify_consistency(5, 5, ROOTS[5], ROOTS[5], [ROOTS[1]])
    assert not verify_consistency(3, 5, ROOTS[3], ROOTS[5], [])
    assert not verify_consistency(6, 5, ROOTS[5], ROOTS[5], [])
    assert not verify_consistency(2, 5, ROOTS[2], ROOTS[5], [b"short"])
    with pytest.raises(MerkleError):
        consistency_proof(6, LEAVES[:5])
    with pytest.raises(MerkleError):
        inclusion_proof(5, LEAVES[:5])
    assert not verify_inclusion(0, 0, LEAVES[0], [], ROOTS[0])


@given(st.lists(st.binary(max_size=4), min_size=1, max_size=40), st.data())
def test_random_trees_proofs_verify(data, draw):
    hashes = [leaf_hash(d) for d in data]
    n = len(hashes)
    i = draw.draw(st.integers(0, n - 1))
    m = draw.draw(st.integers(0, n))
    root = naive.root(hashes)
    assert verify_inclusion(i, n, hashes[i], inclusion_proof(i, hashes), root)
    assert verify_consistency(m, n, naive.root(hashes[:m]), root, consistency_proof(m, hashes))


@given(st.integers(1, 40), st.integers(0, 40), st.lists(st.binary(min_size=32, max_size=32), max_size=8))
def test_random_proofs_never_verify_or_raise(n, i, proof):
    assert not verify_inclusion(i, n, LEAVES[0], proof, ROOTS[min(n, N)]) or proof == inclusion_proof(
        i, LEAVES[:n]
    )
    m = min(i, n)
    ok = verify_consistency(m, n, ROOTS[m], ROOTS[n], proof)
    assert not ok or proof == consistency_proof(m, LEAVES[:n])
