"""One batch through the ingestor, without MQTT: classify (keyring), store (one transaction),
and, while the database is away, wait and try again. `Ingestor` (cloud/ingest/service.py) adds
the broker, the acknowledgements and the threads; wattrail/chaos_ingest.py hooks `_store`.

Faults: a database error keeps the batch in memory, unacknowledged, and retries with jittered
backoff until the database is back; nothing is acked meanwhile. Any other error is the
message's or ours, never the database's, and is isolated to one message so that one poison
message never blocks the rest, nor kills the worker:

    classify raises on a message                -> that message: quarantine `internal_error`
    the database refuses a batch's rows         -> retry one message at a time; the one it
                                                   refuses: quarantine `store_error`
    our code raises storing one message         -> quarantine `internal_error` (exception text)
    even its quarantine row fails               -> a bare `internal_error` row (bytes, reason);
                                                   failing that, logged and acknowledged: the
                                                   agent still holds the uncommitted envelope
                                                   and re-sends it
    the registry (keyring) cannot be loaded     -> retried like an outage: not the message

"Retryable" (`is_retryable`): the connection (lost, refused, or now broken), two ingestors
racing (deadlock, serialisation), the server shedding load. Not class 54 (program limit
exceeded, e.g. an index row too big): that is this statement's data, and retrying it forever
would stop the ingestor as surely as the exception did.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from typing import Any

import psycopg

from cloud.ingest.classify import Candidate, Incoming, Quarantine, QuarantineReason, classify
from cloud.ingest.config import IngestConfig
from cloud.ingest.metrics import (
    M_DB_RETRIES,
    M_HEARTBEAT,
    M_INTERNAL,
    M_KEYRING_LOADS,
    IngestStats,
)
from cloud.ingest.writer import BatchResult, load_keyring, registry_generation, store_batch
from protocols.errors import ProtocolError
from protocols.topics import parse_topic
from security.keyring import Keyring

log = logging.getLogger("wattrail.ingest")

# Errors that say "try the same thing again", not "this message is bad": the connection
# (OperationalError: lost, refused, timed out), two ingestors racing on the same rows, or the
# server shedding load. psycopg 3 derives the named ones from OperationalError already; they
# are listed for the reader. (One tuple: mypy rejects `except (A, *B)`.)
RETRYABLE: tuple[type[psycopg.Error], ...] = (
    psycopg.OperationalError,
    psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure,
    psycopg.errors.LockNotAvailable, psycopg.errors.AdminShutdown,
    psycopg.errors.CannotConnectNow, psycopg.errors.DiskFull,
)


def is_retryable(exc: BaseException, conn: psycopg.Connection[Any] | None) -> bool:
    """True: the database (try the same thing again later); False: the message or our code."""
    if isinstance(exc, psycopg.errors.ProgramLimitExceeded):
        return False  # an OperationalError by class, but caused by the statement's data
    if isinstance(exc, RETRYABLE):
        return True
    # the connection died under a statement: psycopg may say so with an InterfaceError
    return isinstance(exc, psycopg.Error) and conn is not None and (conn.broken or conn.closed)


class Stopping(Exception):  # noqa: N818 - a signal, not an error
    """Stop was requested while the worker waited to retry: nothing of the batch was acked."""


class _RegistryUnavailable(Exception):  # noqa: N818 - reads as the state it names
    """The keyring could not be loaded for a reason other than the connection: retried like an
    outage, because no message is at fault."""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


class BatchPipeline:
    """The worker's steps on a batch, and the state they keep between batches: the database
    connection, the keyring and its registry generation, the counters and the heartbeat."""

    def __init__(self, cfg: IngestConfig) -> None:
        self.cfg = cfg
        self.stats = IngestStats()
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._keyring: Keyring | None = None
        self._keyring_gen = -1
        self._beat_at = time.monotonic()

    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.cfg.dsn, autocommit=False, connect_timeout=5)
        return self._conn

    def _keys(self) -> Keyring:
        """The keyring, reloaded when the registry changed. One one-row read per batch (the
        generation that every change of `agent_keys` moves at its commit, migration 0052): a
        revocation or a new agent applies to the next batch classified after it is registered,
        with no restart and nothing to miss across a reconnect."""
        try:
            conn = self._db()
            gen = registry_generation(conn)
            if self._keyring is None or gen != self._keyring_gen:
                # read after the generation: the keyring is at least as new as the number kept
                self._keyring = load_keyring(conn)
                self._keyring_gen = gen
                M_KEYRING_LOADS.inc()
            conn.commit()
        except Exception as exc:
            if is_retryable(exc, self._conn):
                raise
            raise _RegistryUnavailable(_describe(exc)) from exc
        assert self._keyring is not None
        return self._keyring

    def _retryable(self, exc: BaseException) -> bool:
        return is_retryable(exc, self._conn)

    def _internal_error(self, stage: str, n: int = 1) -> None:
        self.stats.internal_errors += n
        M_INTERNAL.labels(stage).inc(n)

    def _classify(self, batch: list[Incoming]) -> list[Candidate | Quarantine]:
        keyring = self._keys()
        items = [self._classify_one(m, keyring) for m in batch]
        if any(isinstance(i, Quarantine) and i.reason is QuarantineReason.UNKNOWN_KEY
               for i in items) and self._keys() is not keyring:
            # an agent registered while this batch was classified: judge it again; junk with
            # unknown keys costs one one-row read, never a reload
            items = [self._classify_one(m, self._keys()) for m in batch]
        return items

    def _classify_one(self, m: Incoming, keyring: Keyring) -> Candidate | Quarantine:
        try:
            return classify(m, keyring, limits=self.cfg.limits)
        except Exception as exc:  # classify is meant never to raise: a bug, on this message
            log.exception("classify failed on a message of %d bytes on %s; quarantined",
                          len(m.payload), m.topic)
            self._internal_error("classify")
            try:
                agent: str | None = parse_topic(m.topic)[0]
            except ProtocolError:
                agent = None
            return Quarantine(m, QuarantineReason.INTERNAL_ERROR, _describe(exc),
                              hashlib.sha256(m.payload).digest(), agent_id=agent)

    def _store(self, items: list[Candidate | Quarantine]) -> BatchResult:
        try:
            return store_batch(self._db(), items, quarantine_budget=self.cfg.quarantine_budget_bytes)
        except Exception as exc:
            if self._retryable(exc):
                raise
            # Not the connection: some message's rows are refused, or our code failed on one.
            log.warning("batch of %d refused (%s); storing message by message", len(items),
                        _describe(exc))
        total = BatchResult()
        for item in items:
            try:
                total.merge(self._store_one(item))
            except Exception as exc:
                if self._retryable(exc):
                    raise
                # not even a bare quarantine row went in: acknowledged with the batch, and the
                # agent, which keeps every envelope until it is committed, sends it again
                log.exception("message %s (agent %r seq %s) could not be recorded at all; "
                              "acknowledged, the agent re-sends it", item.envelope_hash.hex(),
                              item.agent_id, item.seq)
                self.stats.unrecorded += 1
                self._internal_error("unrecorded")
        return total

    def _store_one(self, item: Candidate | Quarantine) -> BatchResult:
        try:
            return store_batch(self._db(), [item], quarantine_budget=self.cfg.quarantine_budget_bytes)
        except Exception as exc:
            if self._retryable(exc):
                raise
            db_refused = isinstance(exc, psycopg.Error)
            log.error("quarantining a message the %s: %s",
                      "database refuses" if db_refused else "ingestor failed on", _describe(exc))
            if not db_refused:
                self._internal_error("store")
            q = Quarantine(item.msg, QuarantineReason.STORE_ERROR if db_refused
                           else QuarantineReason.INTERNAL_ERROR, _describe(exc),
                           item.envelope_hash, agent_id=item.agent_id, seq=item.seq)
        try:
            return store_batch(self._db(), [q], quarantine_budget=self.cfg.quarantine_budget_bytes)
        except Exception as exc:
            if self._retryable(exc):
                raise
            log.exception("the quarantine row itself was refused; keeping the bytes only")
            self._internal_error("quarantine")
            return store_batch(self._db(), [Quarantine(
                item.msg, QuarantineReason.INTERNAL_ERROR,
                f"{q.reason.value}: {q.detail}; then quarantining it failed: {_describe(exc)}",
                item.envelope_hash)], quarantine_budget=self.cfg.quarantine_budget_bytes)

    def process(self, batch: list[Incoming]) -> BatchResult:
        """Classify and store one batch, retrying through database outages. Returns after
        the commit; the caller acknowledges."""
        attempt = 0
        while True:
            try:
                return self._store(self._classify(batch))
            except Exception as exc:
                if not (isinstance(exc, _RegistryUnavailable) or self._retryable(exc)):
                    raise
                self.stats.db_retries += 1
                M_DB_RETRIES.inc()
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                delay = random.uniform(0, min(5.0, 0.1 * 2 ** attempt))
                attempt += 1
                log.warning("database unavailable (%s); retrying in %.1f s, nothing acked",
                            str(exc).strip().splitlines()[0] if str(exc) else exc, delay)
                self._beat()  # waiting out an outage is this worker's job, not a hang
                if self._stop.wait(delay):
                    raise Stopping from exc

    def _beat(self) -> None:
        self._beat_at = time.monotonic()
        M_HEARTBEAT.set(time.time())
