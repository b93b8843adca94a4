"""Per-agent hash-chain state: pure, in memory, fed one verified envelope at a time.

Theory of operation. Each agent numbers its envelopes 1, 2, 3... and puts SHA-256 of the
previous envelope's bytes in each one. For every agent we remember the hash of each seq we
accepted and the prev hash it carried, and the head (highest accepted seq). An envelope at
seq s, carrying prev p, whose own bytes hash to h, is classified by this table, first match:

    seen[s] == h                           -> replay      (same bytes again; state unchanged)
    seen[s] != h                           -> conflict    (same seq, other bytes; unchanged)
    seen[s-1] known and != p               -> conflict    (broken chain: forks from our history)
    prev[s+1] known and != h               -> conflict    (broken chain: the successor we hold
                                                           does not point at these bytes)
    no head yet and s == 1, or s == head+1 -> ok          (recorded)
    s > head + 1 (or no head and s > 1)    -> gap         (recorded; missing head+1..s-1)
    s < head                               -> reordered   (recorded; fills a hole)

A broken chain is reported as `conflict` rather than a status of its own: in both cases two
histories exist for one agent, and the store's answer is the same (quarantine, alarm), while
the reason string says which kind it was. The cloud hydrates this state from the database
(`seed`) so that several ingestors agree; the auditor builds it from the envelopes it reads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ChainStatus(enum.StrEnum):
    OK = "ok"
    GAP = "gap"
    REORDERED = "reordered"
    REPLAY = "replay"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class ChainResult:
    status: ChainStatus
    reason: str
    missing: tuple[int, int] | None = None  # inclusive range of seqs skipped, for GAP


@dataclass(slots=True)
class AgentChain:
    head_seq: int = 0  # 0: nothing accepted yet
    floor: int = 0  # seqs at or below it are accounted for elsewhere (see `seed`)
    hashes: dict[int, bytes] = field(default_factory=dict)  # seq -> SHA-256 of its envelope
    prevs: dict[int, bytes] = field(default_factory=dict)  # seq -> the prev hash it carried

    @property
    def head_hash(self) -> bytes | None:
        return self.hashes.get(self.head_seq)


class ChainState:
    """Chains of all agents seen so far. `observe` classifies and, when acceptable, records."""

    def __init__(self) -> None:
        self._agents: dict[str, AgentChain] = {}

    def agent(self, agent_id: str) -> AgentChain:
        return self._agents.setdefault(agent_id, AgentChain())

    def seed(self, agent_id: str, head_seq: int, head_hash: bytes) -> None:
        """Start from a known head (e.g. the last committed envelope in the database).

        Seqs up to `head_seq` then count as accounted for by whoever seeded: `missing` does not
        report them, and an unseen one arriving late is classified `reordered`; the database,
        not this state, knows whether it was committed before.
        """
        chain = self.agent(agent_id)
        chain.floor = max(chain.floor, head_seq)
        chain.hashes[head_seq] = head_hash
        chain.head_seq = max(chain.head_seq, head_seq)

    def observe(self, agent_id: str, seq: int, prev_hash: bytes, env_hash: bytes) -> ChainResult:
        chain = self.agent(agent_id)
        seen = chain.hashes.get(seq)
        if seen is not None:
            if seen == env_hash:
                return ChainResult(ChainStatus.REPLAY, f"seq {seq} already accepted with these bytes")
            return ChainResult(ChainStatus.CONFLICT, f"seq {seq} already accepted with other bytes")
        before = chain.hashes.get(seq - 1)
        if before is not None and before != prev_hash:
            return ChainResult(
                ChainStatus.CONFLICT, f"broken chain: prev hash is not the hash of seq {seq - 1} we hold"
            )
        after = chain.prevs.get(seq + 1)
        if after is not None and after != env_hash:
            return ChainResult(
                ChainStatus.CONFLICT, f"broken chain: seq {seq + 1} we hold does not point at these bytes"
            )
        head = chain.head_seq
        chain.hashes[seq] = env_hash
        chain.prevs[seq] = prev_hash
        chain.head_seq = max(head, seq)
        if seq == head + 1:
            return ChainResult(ChainStatus.OK, "next in sequence")
        if seq > head + 1:
            return ChainResult(ChainStatus.GAP, f"seqs {head + 1}..{seq - 1} missing", (head + 1, seq - 1))
        return ChainResult(ChainStatus.REORDERED, f"seq {seq} arrived after seq {head}")

    def missing(self, agent_id: str) -> list[tuple[int, int]]:
        """Inclusive ranges of seqs below the head that were never accepted: the audit's holes."""
        chain = self._agents.get(agent_id)
        if chain is None:
            return []
        holes, expected = [], chain.floor + 1
        for seq in sorted(s for s in chain.hashes if s > chain.floor):
            if seq > expected:
                holes.append((expected, seq - 1))
            expected = seq + 1
        return holes
