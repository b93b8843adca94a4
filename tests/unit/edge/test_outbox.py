"""The outbox keeps every signed envelope until confirmed, refuses when full, and continues
the chain exactly where the disk says it stopped."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.outbox import ZERO_HASH, ChainOrderError, ForeignAckError, Outbox, OutboxFullError


def ack(ob: Outbox, seq: int) -> int:
    """Confirm up to `seq` as the cloud does: naming the hash of our envelope there."""
    h = ob.envelope_hash(seq)
    assert h is not None, f"no unconfirmed envelope {seq}"
    return ob.confirm(seq, h)

_OPEN: list[Outbox] = []


def request_close(ob: Outbox) -> None:
    _OPEN.append(ob)


@pytest.fixture(autouse=True)
def _close_outboxes():
    yield
    while _OPEN:
        _OPEN.pop().close()


def test_append_confirm_and_reopen(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    request_close(ob)
    assert ob.head().seq == 0
    assert ob.head().envelope_hash == ZERO_HASH
    for seq in range(1, 6):
        head = ob.append(seq, f"env{seq}".encode(), created_ms=seq)
        assert head.envelope_hash == hashlib.sha256(f"env{seq}".encode()).digest()
    assert ob.depth == 5
    assert ack(ob, 3) == 3
    assert ob.confirm(2, ZERO_HASH) == 0, "a stale ack deletes nothing"
    assert [p.seq for p in ob.pending()] == [4, 5]
    ob.close()
    again = Outbox(tmp_path / "o.db")
    request_close(again)
    assert again.head().seq == 5
    assert again.confirmed_seq() == 3
    assert again.depth == 2
    assert again.size_bytes == len(b"env4") + len(b"env5")
    assert [p.data for p in again.iter_pending(batch=1)] == [b"env4", b"env5"]


@pytest.mark.parametrize("seq", [0, 2, 5, -1], ids=["zero", "skip", "far", "negative"])
def test_append_refuses_a_seq_that_breaks_the_chain(tmp_path: Path, seq: int) -> None:
    ob = Outbox(tmp_path / "o.db")
    request_close(ob)
    with pytest.raises(ChainOrderError) as info:
        ob.append(seq, b"x", 0)
    assert info.value.expected == 1
    assert ob.depth == 0


def test_full_outbox_refuses_and_keeps_everything(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", max_messages=3)
    request_close(ob)
    for seq in (1, 2, 3):
        ob.append(seq, b"x" * 10, 0)
    with pytest.raises(OutboxFullError) as info:
        ob.append(4, b"y", 0)
    assert info.value.depth == 3
    assert ob.head().seq == 3, "a refused envelope must not advance the chain"
    assert [p.data for p in ob.pending()] == [b"x" * 10] * 3
    ack(ob, 1)
    ob.append(4, b"y", 0)
    assert [p.seq for p in ob.pending()] == [2, 3, 4]


def test_byte_limit(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", max_bytes=25)
    request_close(ob)
    ob.append(1, b"a" * 20, 0)
    with pytest.raises(OutboxFullError):
        ob.append(2, b"b" * 6, 0)
    ob.append(2, b"b" * 5, 0)


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.one_of(st.tuples(st.just("append"), st.binary(max_size=40)),
                              st.tuples(st.just("confirm"), st.integers(0, 60))), max_size=60))
def test_model(tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, object]]) -> None:
    """Against a plain dict: nothing unconfirmed is ever lost, nothing confirmed comes back."""
    ob = Outbox(tmp_path_factory.mktemp("m") / "o.db", max_messages=20)
    request_close(ob)
    model: dict[int, bytes] = {}
    head, confirmed = 0, 0
    for op, arg in ops:
        if op == "append":
            assert isinstance(arg, bytes)
            if len(model) >= 20:
                with pytest.raises(OutboxFullError):
                    ob.append(head + 1, arg, 0)
                continue
            head += 1
            ob.append(head, arg, 0)
            model[head] = arg
        else:
            assert isinstance(arg, int)
            if arg <= confirmed:
                assert ob.confirm(arg, ZERO_HASH) == 0  # stale: whatever it names
            elif arg > head:  # never signed: about another chain, confirms nothing
                with pytest.raises(ForeignAckError):
                    ob.confirm(arg, hashlib.sha256(model.get(head, b"")).digest())
            else:
                with pytest.raises(ForeignAckError):  # the right seq with another chain's hash
                    ob.confirm(arg, hashlib.sha256(model[arg] + b"other").digest())
                assert ob.confirm(arg, hashlib.sha256(model[arg]).digest()) == arg - confirmed
                confirmed = arg
                model = {s: d for s, d in model.items() if s > confirmed}
        assert {p.seq: p.data for p in ob.iter_pending()} == model
        assert ob.depth == len(model)


_WRITER = """
import sys, time
from edge.outbox import Outbox
ob = Outbox(sys.argv[1])
seq = ob.head().seq
while True:
    seq += 1
    ob.append(seq, b"%d:" % seq + b"z" * 200, int(time.time() * 1000))
    print(seq, flush=True)
"""


def test_sigkill_mid_write_and_torn_wal_tail(tmp_path: Path) -> None:
    """SIGKILL while appending, then tear the WAL's last bytes: the outbox reopens with a head
    that matches its last row, everything acknowledged by `append` up to the last completed
    fsync is there, and the chain continues without a gap."""
    db = tmp_path / "o.db"
    acknowledged = 0
    for _round in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(db)], stdout=subprocess.PIPE,
                                text=True, cwd=Path(__file__).resolve().parents[3])
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line and int(line) >= acknowledged + 50:
                acknowledged = int(line)
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        wal = Path(str(db) + "-wal")
        if wal.exists() and wal.stat().st_size > 100:
            with open(wal, "r+b") as fh:  # a torn last write
                fh.truncate(wal.stat().st_size - 37)
        ob = Outbox(db)
        head = ob.head()
        seqs = [p.seq for p in ob.iter_pending()]
        assert seqs == list(range(1, head.seq + 1)), "a gap or a reordering after the crash"
        # The torn tail may cost the last (un-fsynced-by-us) frames, but SQLite's WAL checksums
        # make it an all-or-nothing loss of whole transactions, never a half row.
        assert head.seq >= acknowledged - 1
        last = ob.pending(after_seq=head.seq - 1)[0]
        assert hashlib.sha256(last.data).digest() == head.envelope_hash
        acknowledged = head.seq
        ob.close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_an_ack_beyond_the_head_confirms_nothing(tmp_path: Path) -> None:
    # The retained ack of an earlier chain under the same agent id ("committed up to 99")
    # reaches an agent whose fresh outbox holds only seq 1, never delivered: clamping the ack
    # to the head deleted it (a reading lost in the determinism test's second run).
    ob = Outbox(tmp_path / "o.db")
    request_close(ob)
    ob.append(1, b"a", 0)
    with pytest.raises(ForeignAckError, match="beyond our head seq 1"):
        ob.confirm(99, hashlib.sha256(b"whatever").digest())
    assert (ob.confirmed_seq(), ob.depth) == (0, 1)
    with pytest.raises(ForeignAckError, match="hash"):
        ob.confirm(1, hashlib.sha256(b"another chain's seq 1").digest())
    assert [p.seq for p in ob.pending()] == [1], "seq 1 was never delivered: it must stay"
    assert ack(ob, 1) == 1
