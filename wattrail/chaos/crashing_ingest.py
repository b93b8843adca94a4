"""`wattrail ingest`, dying on purpose at an exact point: the reliability campaign's crash fault.

    python -m wattrail.chaos.crashing_ingest mid-batch 2 -- --share-group g --max-batch 16 ...

runs the real `wattrail ingest` command with the options after `--`, except that its N-th batch
(counted from 1) ends the process with `os._exit`, no cleanup, no acknowledgement:
- `mid-batch`: inside the batch's transaction, its rows written and not committed (exit 71);
  the server rolls them back and the broker redelivers everything.
- `after-commit`: right after the commit, before any broker or agent ack (exit 70), the worst
  moment; the redelivered messages are already stored and must be acked as duplicates.

The shipped ingestor has no switch for this: this module subclasses cloud.ingest.service's
Ingestor and installs the subclass in this process only, so the campaign (wattrail/chaos/,
scenario ingestor-kill) and tests/integration/ingest/test_faults.py start this module instead of
`wattrail.cli ingest`. The exit codes prove the deaths happened where claimed.
"""

from __future__ import annotations

import logging
import os
import sys

from cloud.ingest import service
from cloud.ingest.classify import Candidate, Incoming, Quarantine
from cloud.ingest.writer import BatchResult, store_batch

log = logging.getLogger("wattrail.ingest")
EXIT_MID_BATCH = 71
EXIT_AFTER_COMMIT = 70
POINTS = ("mid-batch", "after-commit")
# The Ingestor steps the subclass hooks: _store runs the batch's transaction, _acknowledge is
# called right after its commit. A rename in service.py must fail here, not crash nowhere.
HOOKED = ("_store", "_acknowledge")


def crashing_ingestor(point: str, nth: int) -> type[service.Ingestor]:
    """An Ingestor that exits at `point` ("mid-batch" or "after-commit") of its `nth` batch."""
    if point not in POINTS:
        raise ValueError(f"crash point {point!r}: use one of {', '.join(POINTS)}")
    if nth < 1:
        raise ValueError(f"crash at batch {nth}: batches count from 1")
    missing = [m for m in HOOKED if not callable(getattr(service.Ingestor, m, None))]
    if missing:
        raise RuntimeError(f"cloud.ingest.service.Ingestor has no {', '.join(missing)} any more: "
                           "update wattrail/chaos/crashing_ingest.py to hook the new steps")

    class CrashingIngestor(service.Ingestor):
        def _store(self, items: list[Candidate | Quarantine]) -> BatchResult:
            if point == "mid-batch" and self.stats.batches + 1 == nth:
                conn = self._db()
                with conn.transaction():
                    store_batch(conn, items)
                    log.error("chaos crash mid-batch: exiting inside the transaction of batch %d",
                              nth)
                    os._exit(EXIT_MID_BATCH)
            return super()._store(items)

        def _acknowledge(self, batch: list[Incoming], result: BatchResult) -> None:
            if point == "after-commit" and self.stats.batches + 1 == nth:
                log.error("chaos crash after-commit: exiting between the commit and the acks "
                          "of batch %d", nth)
                os._exit(EXIT_AFTER_COMMIT)
            super()._acknowledge(batch, result)

    return CrashingIngestor


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[2] != "--" or argv[0] not in POINTS or not argv[1].isdigit():
        sys.exit(f"usage: python -m wattrail.chaos.crashing_ingest {{{'|'.join(POINTS)}}} N -- "
                 "[wattrail ingest options]")
    # run_forever (cloud/ingest/service.py) builds its ingestor by this module-level name
    service.Ingestor = crashing_ingestor(argv[0], int(argv[1]))  # type: ignore[misc]  # on purpose
    # only the ingest command, not wattrail.cli's whole app: the campaign imports this module
    # for its exit codes, and wattrail.cli imports the campaign's command
    import typer

    from wattrail.commands.ingest import ingest

    app = typer.Typer(add_completion=False)
    app.callback()(_group)
    app.command()(ingest)
    app(["ingest", *argv[3:]], prog_name="wattrail")


def _group() -> None:
    """`wattrail ingest` with a crash point."""


if __name__ == "__main__":
    main(sys.argv[1:])
