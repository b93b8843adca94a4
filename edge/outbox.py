"""The edge agent's durable outbox: signed envelopes kept on disk until the cloud commits them.

Why SQLite: one file, WAL journal, and `synchronous=FULL` make every append durable once
`append` returns (fsync of the WAL), and a torn last write is rolled back by SQLite on the next
open instead of corrupting what came before. The chain head (last seq, hash of the last
envelope) lives in the same transaction as the envelope, so after a crash the agent continues
the hash chain exactly where the disk says it stopped: never a reused seq, never a gap.

States and transitions of an envelope are in `edge/delivery.py`; this module is storage only.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ZERO_HASH = b"\x00" * 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (
    seq        INTEGER PRIMARY KEY,
    data       BLOB    NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""


class OutboxError(Exception):
    """Base of outbox errors."""


class OutboxFullError(OutboxError):
    """The outbox reached its limit; the new envelope was NOT stored. Raise an alarm: nothing
    unconfirmed is ever overwritten, so the agent must stop producing until acks arrive."""

    def __init__(self, depth: int, size_bytes: int, max_messages: int, max_bytes: int) -> None:
        super().__init__(
            f"outbox full: {depth} envelopes / {size_bytes} bytes (limits {max_messages} / "
            f"{max_bytes}); waiting for the cloud to confirm before signing more"
        )
        self.depth = depth
        self.size_bytes = size_bytes


class ForeignAckError(OutboxError):
    """An ack that is not about this outbox's chain: beyond our head, or naming an envelope
    whose hash is not ours. Typically a retained ack that outlived an earlier chain under the
    same agent id (a reset outbox, a re-registered device). Nothing was confirmed."""

    def __init__(self, seq: int, why: str) -> None:
        super().__init__(f"ignoring an ack for seq {seq}: {why}")
        self.seq = seq
        self.why = why


class ChainOrderError(OutboxError):
    """We tried to append a seq that does not continue the chain: a bug of ours, not the peer's."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"outbox expects seq {expected} next, got {got}")
        self.expected = expected
        self.seq = got


@dataclass(frozen=True)
class ChainHead:
    seq: int  # 0 when nothing was ever signed
    envelope_hash: bytes  # SHA-256 of the last envelope's bytes, or 32 zero bytes


@dataclass(frozen=True)
class Pending:
    seq: int
    data: bytes
    created_ms: int = 0  # when it was sealed, for the publish-lag metric


@dataclass(frozen=True)
class OutboxSummary:
    """What `wattrail edge status` and the health endpoint report about the outbox."""

    depth: int
    size_bytes: int
    head_seq: int
    confirmed_seq: int
    oldest_seq: int | None
    oldest_created_ms: int | None  # when the oldest unconfirmed envelope was sealed


class Outbox:
    """Thread-safe: the poller appends while the MQTT thread reads and confirms."""

    def __init__(self, path: Path | str, *, max_messages: int = 100_000,
                 max_bytes: int = 512 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT count(*), coalesce(sum(length(data)), 0) FROM envelopes")
        self._depth, self._bytes = row.fetchone()

    # -- meta --------------------------------------------------------------------------------
    def _meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    def _set_meta(self, key: str, value: bytes) -> None:
        self._db.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                         "SET value = excluded.value", (key, value))

    def head(self) -> ChainHead:
        with self._lock:
            seq = self._meta("head_seq")
            h = self._meta("head_hash")
        return ChainHead(int(seq.decode()) if seq else 0, h or ZERO_HASH)

    def confirmed_seq(self) -> int:
        with self._lock:
            v = self._meta("confirmed_seq")
        return int(v.decode()) if v else 0

    # -- writes ------------------------------------------------------------------------------
    def append(self, seq: int, data: bytes, created_ms: int) -> ChainHead:
        """Store an envelope durably and advance the chain head. Returns the new head."""
        with self._lock:
            head_seq = int((self._meta("head_seq") or b"0").decode())
            if seq != head_seq + 1:
                raise ChainOrderError(head_seq + 1, seq)
            if self._depth >= self.max_messages or self._bytes + len(data) > self.max_bytes:
                raise OutboxFullError(self._depth, self._bytes, self.max_messages, self.max_bytes)
            digest = hashlib.sha256(data).digest()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT INTO envelopes(seq, data, created_ms) VALUES (?, ?, ?)",
                                 (seq, data, created_ms))
                self._set_meta("head_seq", str(seq).encode())
                self._set_meta("head_hash", digest)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth += 1
            self._bytes += len(data)
            return ChainHead(seq, digest)

    def confirm(self, up_to_seq: int, envelope_hash: bytes) -> int:
        """The cloud committed every seq <= up_to_seq, and holds `envelope_hash` as the hash
        of seq up_to_seq: delete them. Returns how many went.

        A stale or duplicate ack (up_to_seq already confirmed) deletes nothing. An ack beyond
        what we ever signed, or whose hash is not that of our envelope at that seq, is about
        another chain: it raises ForeignAckError and confirms nothing. (Clamping it to our head
        would delete envelopes just signed and never delivered.)
        """
        with self._lock:
            current = int((self._meta("confirmed_seq") or b"0").decode())
            if up_to_seq <= current:
                return 0  # a stale or duplicate ack
            head = int((self._meta("head_seq") or b"0").decode())
            if up_to_seq > head:
                raise ForeignAckError(up_to_seq, f"beyond our head seq {head}")
            if self._hash_at(up_to_seq) != envelope_hash:
                raise ForeignAckError(up_to_seq, "its envelope hash is not that of our envelope")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT count(*), coalesce(sum(length(data)), 0) FROM envelopes WHERE seq <= ?",
                    (up_to_seq,)).fetchone()
                self._db.execute("DELETE FROM envelopes WHERE seq <= ?", (up_to_seq,))
                self._set_meta("confirmed_seq", str(up_to_seq).encode())
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth -= row[0]
            self._bytes -= row[1]
            return int(row[0])

    def envelope_hash(self, seq: int) -> bytes | None:
        """SHA-256 of the unconfirmed envelope at `seq` (what the cloud's ack must name)."""
        with self._lock:
            return self._hash_at(seq)

    def _hash_at(self, seq: int) -> bytes | None:  # caller holds the lock
        row = self._db.execute("SELECT data FROM envelopes WHERE seq = ?", (seq,)).fetchone()
        return hashlib.sha256(row[0]).digest() if row else None

    # -- reads -------------------------------------------------------------------------------
    def pending(self, after_seq: int = 0, limit: int = 1000) -> list[Pending]:
        """Unconfirmed envelopes with seq > after_seq, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, data, created_ms FROM envelopes WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit)).fetchall()
        return [Pending(int(s), bytes(d), int(c)) for s, d, c in rows]

    def oldest(self) -> tuple[int, int] | None:
        """(seq, created_ms) of the oldest unconfirmed envelope, or None when empty."""
        with self._lock:
            row = self._db.execute(
                "SELECT seq, created_ms FROM envelopes ORDER BY seq LIMIT 1").fetchone()
        return (int(row[0]), int(row[1])) if row else None

    def summary(self) -> OutboxSummary:
        oldest = self.oldest()
        return OutboxSummary(self.depth, self.size_bytes, self.head().seq, self.confirmed_seq(),
                             oldest[0] if oldest else None, oldest[1] if oldest else None)

    def iter_pending(self, batch: int = 1000) -> Iterator[Pending]:
        after = 0
        while chunk := self.pending(after, batch):
            yield from chunk
            after = chunk[-1].seq

    @property
    def depth(self) -> int:
        return int(self._depth)

    @property
    def size_bytes(self) -> int:
        return int(self._bytes)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @classmethod
    def inspect(cls, path: Path | str) -> OutboxSummary:
        """Summarise an outbox file without creating it (`wattrail edge status`). Safe while
        the agent runs: WAL lets a reader see the last committed state without blocking it."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no outbox at {path} (has the agent run yet?)")
        with cls(path) as ob:
            return ob.summary()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
