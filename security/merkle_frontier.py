"""An append-only RFC 9162 Merkle tree kept as its frontier: O(log n) state, O(1) amortised
appends, and the same root as `security.merkle.root_hash` over all leaves.

The tree of n leaves splits at the largest power of two below n, so it is a left-to-right
sequence of perfect subtrees, one per set bit of n, largest first. The frontier stores just
their sizes and hashes; the root folds them from the right: node(p1, node(p2, ... pk)).
The cloud's transparency log keeps this in the database so signing a tree head never needs
to read every leaf.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from security.merkle import EMPTY_ROOT, node_hash


@dataclass
class Frontier:
    size: int = 0
    # (subtree size, subtree hash), sizes strictly decreasing powers of two
    subtrees: list[tuple[int, bytes]] = field(default_factory=list)

    def append(self, leaf: bytes) -> int:
        """Add a leaf *hash* (`security.merkle.leaf_hash(data)`); returns its index."""
        index = self.size
        self.subtrees.append((1, leaf))
        while len(self.subtrees) >= 2 and self.subtrees[-1][0] == self.subtrees[-2][0]:
            (size, right), (_, left) = self.subtrees.pop(), self.subtrees.pop()
            self.subtrees.append((2 * size, node_hash(left, right)))
        self.size += 1
        return index

    def root(self) -> bytes:
        if not self.subtrees:
            return EMPTY_ROOT
        acc = self.subtrees[-1][1]
        for _size, h in reversed(self.subtrees[:-1]):
            acc = node_hash(h, acc)
        return acc

    def to_list(self) -> list[list[object]]:
        return [[s, h.hex()] for s, h in self.subtrees]

    @classmethod
    def from_list(cls, items: list[list[object]]) -> Frontier:
        subtrees = [(int(str(s)), bytes.fromhex(str(h))) for s, h in items]
        sizes = [s for s, _ in subtrees]
        if any(s & (s - 1) for s in sizes) or sizes != sorted(set(sizes), reverse=True):
            raise ValueError("a frontier holds distinct powers of two, largest first")
        return cls(sum(sizes), subtrees)
