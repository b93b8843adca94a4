from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from security.merkle import leaf_hash, root_hash
from security.merkle_frontier import EMPTY_ROOT, Frontier


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_frontier_root_equals_the_full_tree_root(data: list[bytes]) -> None:
    f = Frontier()
    leaves = [leaf_hash(d) for d in data]
    for i, leaf in enumerate(leaves):
        assert f.append(leaf) == i
        assert f.root() == root_hash(leaves[: i + 1])
    assert len(f.subtrees) == bin(len(leaves)).count("1")
    again = Frontier.from_list(f.to_list())
    assert (again.size, again.root()) == (f.size, f.root())


def test_empty_tree() -> None:
    assert Frontier().root() == EMPTY_ROOT == root_hash([])


@pytest.mark.parametrize("items", [[[3, "00"]], [[1, "00"], [2, "00"]], [[2, "00"], [2, "00"]]],
                         ids=["not-power-of-two", "ascending", "duplicate"])
def test_from_list_rejects_impossible_frontiers(items: list[list[object]]) -> None:
    with pytest.raises(ValueError, match="powers of two"):
        Frontier.from_list(items)
