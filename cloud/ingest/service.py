"""The ingestor process: subscribe, batch, verify, store, and only then acknowledge.

    broker ──$share/ingest/wattrail/v1/+/readings (QoS 1, manual ack)──▶ queue
    queue ──batch (≤ max_batch msgs or ≤ max_wait s)──▶ classify (keyring) ──▶ writer (one tx)
    commit ──▶ PUBACK every message of the batch ──▶ retained "committed up to N" per agent

Why manual ack: paho would otherwise PUBACK on receipt, and a crash before the commit would
lose the message for good (the broker forgets acknowledged messages). With manual ack, an
unacknowledged message is redelivered when we reconnect, and the agent resends anything the
cloud has not confirmed anyway. Quarantined messages are acknowledged too: they are stored
(in `quarantine`), so they are handled.

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
would stop the ingestor as surely as the exception did. The worker beats a heartbeat at every
loop; `/healthz` (cloud/ingest/health.py) fails when it is dead or stuck.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import random
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import Counter, Gauge, Histogram

from cloud.ingest.classify import Candidate, Incoming, Quarantine, QuarantineReason, classify
from cloud.ingest.health import STALE_AFTER_S, Health, judge, serve
from cloud.ingest.limits import Limits
from cloud.ingest.writer import (
    QUARANTINE_BUDGET_BYTES,
    QUARANTINE_PREFIX_BYTES,
    BatchResult,
    load_keyring,
    registry_generation,
    store_batch,
)
from protocols.errors import ProtocolError
from protocols.topics import encode_ack, parse_topic, shared_subscription, topic
from security.keyring import Keyring

log = logging.getLogger("wattrail.ingest")

# Prometheus metrics (served by `wattrail ingest --metrics-port`).
M_MESSAGES = Counter("wattrail_ingest_messages_total", "MQTT messages received")
M_ENVELOPES = Counter("wattrail_ingest_envelopes_stored_total", "envelopes stored")
M_READINGS = Counter("wattrail_ingest_readings_stored_total", "readings stored")
M_DUPLICATES = Counter("wattrail_ingest_duplicates_total", "exact re-deliveries acknowledged")
M_GAPS = Counter("wattrail_ingest_chain_gaps_total", "envelopes stored ahead of a missing seq")
M_QUARANTINED = Counter("wattrail_ingest_quarantined_total", "messages quarantined", ["reason"])
M_KEYRING_LOADS = Counter("wattrail_ingest_keyring_loads_total",
                          "keyring (re)loads: at start and after each registry change")
M_TRUNCATED = Counter("wattrail_ingest_quarantine_truncated_total",
                      "quarantined messages kept as a prefix only: the agent's quarantine "
                      "budget is spent, or the message is oversized", ["agent"])
M_UNKNOWN_METERS = Gauge("wattrail_ingest_unknown_meters",
                         "distinct meter ids with stored readings that the archive (meters) "
                         "does not know, seen by this ingestor")
M_DB_RETRIES = Counter("wattrail_ingest_db_retries_total", "batches retried after a DB error")
M_BATCH = Histogram("wattrail_ingest_batch_seconds", "classify + store + commit per batch")
M_ACK_LAG = Histogram("wattrail_ingest_commit_to_ack_seconds", "commit to broker/agent acks",
                      buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0))
M_TREE = Gauge("wattrail_ingest_tlog_tree_size", "leaves in the last signed tree head")
M_INTERNAL = Counter("wattrail_ingest_internal_errors_total",
                     "exceptions of our own code, isolated so the worker goes on", ["stage"])
M_HEARTBEAT = Gauge("wattrail_ingest_worker_heartbeat_timestamp_seconds",
                    "unix time of the ingest worker's last loop (see /healthz)")
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


class _Stopping(Exception):  # noqa: N818 - a signal, not an error
    """Stop was requested while the worker waited to retry: nothing of the batch was acked."""


class _RegistryUnavailable(Exception):  # noqa: N818 - reads as the state it names
    """The keyring could not be loaded for a reason other than the connection: retried like an
    outage, because no message is at fault."""


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


@dataclass(frozen=True)
class IngestConfig:
    dsn: str
    mqtt_host: str
    mqtt_port: int
    ca: Path
    cert: Path
    key: Path
    client_id: str = field(default_factory=lambda: f"wattrail-ingestor-{uuid.uuid4().hex[:8]}")
    share_group: str = "ingest"
    max_batch: int = 500
    max_wait_s: float = 0.2
    log_key: Path | None = None  # Ed25519 PEM: run the transparency-log sequencer and sign heads
    sth_every_s: float = 10.0
    limits: Limits = field(default_factory=Limits)  # the plausible window for timestamps
    metrics_port: int | None = None  # serve /metrics and /healthz there (0: any free port)
    metrics_host: str = "127.0.0.1"
    stale_after_s: float = STALE_AFTER_S  # /healthz fails when the worker's beat is older
    # bytes of quarantined messages kept whole per agent; past it only a 4 KiB prefix, the
    # hash and the size are kept, and the agent is counted and logged (docs/ingest.md)
    quarantine_budget_bytes: int = QUARANTINE_BUDGET_BYTES


@dataclass
class IngestStats:
    received: int = 0
    batches: int = 0
    stored: int = 0
    readings: int = 0
    duplicates: int = 0
    reading_conflicts: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    db_retries: int = 0
    internal_errors: int = 0  # exceptions of our own code, each isolated to a message or batch
    unrecorded: int = 0  # messages acked with no row at all (even their quarantine failed)
    quarantine_truncated: int = 0  # kept as a prefix only (budget spent, or oversized)
    unknown_meters: int = 0  # distinct meter ids stored that the archive does not know
    last_batch_ms: float = 0.0
    commit_to_ack_ms: float = 0.0
    tree_size: int = 0


class Ingestor:
    def __init__(self, cfg: IngestConfig) -> None:
        self.cfg = cfg
        self.stats = IngestStats()
        self._queue: queue.Queue[Incoming] = queue.Queue()
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._keyring: Keyring | None = None
        self._keyring_gen = -1
        self._known_meters: set[str] = set()  # ids the archive had when last asked
        self._unknown_meters: set[str] = set()  # warned about once each (bounded below)
        self._beat_at = time.monotonic()
        self._worker: threading.Thread | None = None
        self._logger: threading.Thread | None = None
        self._http: Any = None
        self.http_port: int | None = None
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
                        protocol=mqtt.MQTTv5, manual_ack=True)
        c.tls_set(ca_certs=str(cfg.ca), certfile=str(cfg.cert), keyfile=str(cfg.key),
                  cert_reqs=ssl.CERT_REQUIRED)
        # paho annotates the delays as int, but only adds, doubles and sleeps them: 0.2 s works
        c.reconnect_delay_set(0.2, 10)  # type: ignore[arg-type]
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.client = c
        self.connected = threading.Event()
        self.subscribed = threading.Event()  # the broker granted the shared subscription

    # -- MQTT thread -----------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            log.error("broker refused the ingestor: %s", rc)
            return
        client.subscribe(shared_subscription("readings", self.cfg.share_group), qos=1)
        self.connected.set()
        log.info("connected to %s:%d, subscribed", self.cfg.mqtt_host, self.cfg.mqtt_port)

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, rcs: list[Any], _p: Any) -> None:
        if all(not rc.is_failure for rc in rcs):
            self.subscribed.set()
        else:
            log.error("broker refused the ingestor's subscription: %s", rcs)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.stats.received += 1
        M_MESSAGES.inc()
        self._queue.put(Incoming(msg.topic, bytes(msg.payload), msg.mid,
                                 time.time_ns() // 1_000_000))

    # -- worker thread ---------------------------------------------------------------------------
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

    def _next_batch(self) -> list[Incoming]:
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.cfg.max_wait_s
        while len(batch) < self.cfg.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return batch

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
                    raise _Stopping from exc

    def _acknowledge(self, batch: list[Incoming], result: BatchResult) -> None:
        for m in batch:
            self.client.ack(m.mid, 1)
        for agent_id, upto in result.committed_upto.items():
            self.client.publish(topic(agent_id, "ack"),
                                encode_ack(upto, result.committed_hash[agent_id]),
                                qos=1, retain=True)

    def _check_meters(self, ids: set[str]) -> None:
        """Say so when readings of a meter the archive does not know were stored (they are
        kept: the topology may simply be imported later). One query only for ids not seen
        before; a warning once per id."""
        new = ids - self._known_meters - self._unknown_meters
        if not new:
            return
        try:
            conn = self._db()
            found = {r[0] for r in conn.execute(
                "SELECT meter_id FROM meters WHERE meter_id = ANY(%s)", [sorted(new)])}
            conn.commit()
        except Exception:  # only a diagnostic: never worth failing the batch's acks
            log.warning("could not check %d meter id(s) against the archive", len(new),
                        exc_info=True)
            return
        self._known_meters |= found
        unknown = sorted(new - found)
        if unknown:
            if len(self._unknown_meters) < 100_000:
                self._unknown_meters.update(unknown)
            self.stats.unknown_meters = len(self._unknown_meters)
            M_UNKNOWN_METERS.set(len(self._unknown_meters))
            shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            log.warning("stored readings of %d meter(s) the archive does not know: %s; import "
                        "the topology that has them (wattrail topology import)", len(unknown),
                        shown)

    def _beat(self) -> None:
        self._beat_at = time.monotonic()
        M_HEARTBEAT.set(time.time())

    def run_worker(self) -> None:
        while not self._stop.is_set():
            self._beat()
            batch = self._next_batch()
            if not batch:
                continue
            try:
                self._handle(batch)
            except _Stopping:
                return  # stopping during an outage: nothing was acked, the broker redelivers
            except Exception:  # outside the per-message isolation (acks, counters): a bug
                log.exception("ingest worker: unexpected error on a batch of %d messages; "
                              "acknowledging them, the agents re-send what is not committed",
                              len(batch))
                self._internal_error("batch")
                try:
                    self._acknowledge(batch, BatchResult())  # PUBACKs only: no agent ack moves
                except Exception:
                    log.exception("ingest worker: acknowledging the failed batch failed too")

    def _handle(self, batch: list[Incoming]) -> None:
        started = time.monotonic()
        result = self.process(batch)
        committed = time.monotonic()
        self._acknowledge(batch, result)
        self.stats.batches += 1
        self.stats.stored += result.stored
        self.stats.readings += result.readings
        self.stats.reading_conflicts += result.reading_conflicts
        self.stats.duplicates += result.duplicates
        for reason, n in result.quarantined.items():
            self.stats.quarantined[reason] = self.stats.quarantined.get(reason, 0) + n
            M_QUARANTINED.labels(reason).inc(n)
        self._check_meters(result.meter_ids)
        for agent, n in result.truncated.items():
            self.stats.quarantine_truncated += n
            M_TRUNCATED.labels(agent).inc(n)
            log.warning("quarantine budget of agent %r spent (%d bytes kept whole): %d more "
                        "message(s) kept as a %d-byte prefix with hash and size", agent,
                        self.cfg.quarantine_budget_bytes, n, QUARANTINE_PREFIX_BYTES)
        self.stats.last_batch_ms = (committed - started) * 1000
        self.stats.commit_to_ack_ms = (time.monotonic() - committed) * 1000
        M_ENVELOPES.inc(result.stored)
        M_READINGS.inc(result.readings)
        M_DUPLICATES.inc(result.duplicates)
        M_GAPS.inc(result.gaps)
        M_BATCH.observe(committed - started)
        M_ACK_LAG.observe(self.stats.commit_to_ack_ms / 1000)

    def health(self) -> Health:
        """Is the worker alive and beating (cloud/ingest/health.py says why it matters)."""
        s = self.stats
        return judge(
            worker_alive=self._worker is not None and self._worker.is_alive(),
            last_beat_s_ago=time.monotonic() - self._beat_at,
            stale_after_s=self.cfg.stale_after_s,
            tlog_alive=None if self._logger is None else self._logger.is_alive(),
            details={"mqtt_connected": self.client.is_connected(),
                     "subscribed": self.subscribed.is_set(), "batches": s.batches,
                     "stored": s.stored, "db_retries": s.db_retries,
                     "internal_errors": s.internal_errors, "unrecorded": s.unrecorded,
                     "quarantined": dict(s.quarantined)})

    def run_log(self) -> None:
        """Append stored envelopes to the transparency log and sign a head every cadence.
        Any ingestor may run it; the advisory lock in cloud/ingest/tlog.py serialises them."""
        from cloud.ingest.tlog import append_pending, sign_head
        from security.keys import load_private_key

        assert self.cfg.log_key is not None
        key = load_private_key(self.cfg.log_key)
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.wait(self.cfg.sth_every_s):
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.cfg.dsn, connect_timeout=5)
                while append_pending(conn):
                    pass
                head = sign_head(conn, key)
                if head is not None:
                    self.stats.tree_size = head.tree_size
                    M_TREE.set(head.tree_size)
                    log.info("signed tree head: size %d root %s", head.tree_size,
                             head.root_hash.hex()[:16])
            except Exception as exc:  # never let one failure end the sequencer for good
                if isinstance(exc, psycopg.Error):
                    log.warning("transparency log step failed (%s); retrying next cadence", exc)
                else:
                    log.exception("transparency log step failed; retrying next cadence")
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def start(self) -> None:
        if self.cfg.metrics_port is not None:
            server, _thread = serve(self.cfg.metrics_host, self.cfg.metrics_port, self.health)
            self._http, self.http_port = server, int(server.server_port)
        self.client.connect_async(self.cfg.mqtt_host, self.cfg.mqtt_port, keepalive=30)
        self.client.loop_start()
        self._beat()
        self._worker = threading.Thread(target=self.run_worker, name="ingest-worker", daemon=True)
        self._worker.start()
        if self.cfg.log_key is not None:
            self._logger = threading.Thread(target=self.run_log, name="tlog", daemon=True)
            self._logger.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout)
        if self._logger is not None:
            self._logger.join(timeout)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        self.client.disconnect()
        self.client.loop_stop()
        if self._conn is not None:
            self._conn.close()


def run_forever(cfg: IngestConfig, *, status: Callable[[IngestStats], None] | None = None,
                stop: threading.Event | None = None, every_s: float = 5.0) -> None:
    ing = Ingestor(cfg)
    ing.start()
    stop = stop or threading.Event()
    try:
        while not stop.wait(every_s):
            if status is not None:
                status(ing.stats)
    finally:
        ing.stop()
