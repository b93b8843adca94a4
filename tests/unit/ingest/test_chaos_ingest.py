"""The campaign's crashing ingestor (wattrail/chaos/crashing_ingest.py) hooks steps the real Ingestor
still has and dies only at the batch it was told; the shipped ingestor has no crash switch.
That it dies where claimed against the real services: tests/chaos (ingestor-kill)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from cloud.ingest import service
from cloud.ingest.metrics import IngestStats
from cloud.ingest.writer import BatchResult
from wattrail.chaos import crashing_ingest as chaos_ingest
from wattrail.chaos.crashing_ingest import EXIT_AFTER_COMMIT, HOOKED, crashing_ingestor, main


def test_the_shipped_ingestor_has_no_crash_switch():
    src = inspect.getsource(service)
    assert "CRASH" not in src and "_exit" not in src


def test_the_hooks_override_steps_the_ingestor_has():
    cls = crashing_ingestor("after-commit", 1)
    assert issubclass(cls, service.Ingestor)
    overridden = {n for n in vars(cls) if callable(vars(cls)[n]) and not n.startswith("__")}
    assert overridden == set(HOOKED)
    assert all(callable(getattr(service.Ingestor, n, None)) for n in HOOKED)


class _Client:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)

    def publish(self, *_a: Any, **_k: Any) -> None:
        pass


def test_after_commit_dies_at_the_nth_batch_only(monkeypatch: pytest.MonkeyPatch):
    def exit_(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr(chaos_ingest.os, "_exit", exit_)
    ing: Any = object.__new__(crashing_ingestor("after-commit", 2))  # no broker, no database
    ing.client, ing.stats = _Client(), IngestStats()
    batch: Any = [type("M", (), {"mid": 7})()]
    ing._acknowledge(batch, BatchResult())  # batch 1: acknowledged as usual
    assert ing.client.acked == [7]
    ing.stats.batches = 1
    with pytest.raises(SystemExit) as died:
        ing._acknowledge(batch, BatchResult())  # batch 2: dies before any ack
    assert died.value.code == EXIT_AFTER_COMMIT
    assert ing.client.acked == [7]


@pytest.mark.parametrize(("point", "nth", "match"), [
    ("mid_batch", 1, "crash point"),
    ("after-commit", 0, "count from 1"),
], ids=["unknown-point", "batch-zero"])
def test_bad_crash_points_are_refused(point: str, nth: int, match: str):
    with pytest.raises(ValueError, match=match):
        crashing_ingestor(point, nth)


@pytest.mark.parametrize("argv", [[], ["mid-batch", "2"], ["mid-batch", "x", "--"],
                                  ["later", "2", "--"], ["mid-batch", "2", "--share-group"]],
                         ids=["empty", "no-separator", "not-a-number", "unknown-point", "no-dashes"])
def test_usage_errors_exit_with_the_usage(argv: list[str]):
    with pytest.raises(SystemExit, match="usage"):
        main(argv)
