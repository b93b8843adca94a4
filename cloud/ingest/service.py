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
backoff until the database is back; nothing is acked meanwhile. A message whose rows the
database refuses (not a connection problem) is isolated by retrying the batch one message at
a time and quarantined as `store_error`, so one poison message never blocks the rest.
"""

from __future__ import annotations

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
from cloud.ingest.limits import Limits
from cloud.ingest.writer import BatchResult, load_keyring, store_batch
from protocols.topics import encode_ack, shared_subscription, topic
from security.keyring import Keyring

log = logging.getLogger("wattrail.ingest")

# Prometheus metrics (served by `wattrail ingest --metrics-port`).
M_MESSAGES = Counter("wattrail_ingest_messages_total", "MQTT messages received")
M_ENVELOPES = Counter("wattrail_ingest_envelopes_stored_total", "envelopes stored")
M_READINGS = Counter("wattrail_ingest_readings_stored_total", "readings stored")
M_DUPLICATES = Counter("wattrail_ingest_duplicates_total", "exact re-deliveries acknowledged")
M_GAPS = Counter("wattrail_ingest_chain_gaps_total", "envelopes stored ahead of a missing seq")
M_QUARANTINED = Counter("wattrail_ingest_quarantined_total", "messages quarantined", ["reason"])
M_DB_RETRIES = Counter("wattrail_ingest_db_retries_total", "batches retried after a DB error")
M_BATCH = Histogram("wattrail_ingest_batch_seconds", "classify + store + commit per batch")
M_ACK_LAG = Histogram("wattrail_ingest_commit_to_ack_seconds", "commit to broker/agent acks",
                      buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0))
M_TREE = Gauge("wattrail_ingest_tlog_tree_size", "leaves in the last signed tree head")
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
    keyring_refresh_s: float = 30.0
    log_key: Path | None = None  # Ed25519 PEM: run the transparency-log sequencer and sign heads
    sth_every_s: float = 10.0
    limits: Limits = field(default_factory=Limits)  # the plausible window for timestamps


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
        self._keyring_at = 0.0
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
                        protocol=mqtt.MQTTv5, manual_ack=True)
        c.tls_set(ca_certs=str(cfg.ca), certfile=str(cfg.cert), keyfile=str(cfg.key),
                  cert_reqs=ssl.CERT_REQUIRED)
        # paho annotates the delays as int, but only adds, doubles and sleeps them: 0.2 s works
        c.reconnect_delay_set(0.2, 10)  # type: ignore[arg-type]
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        self.client = c
        self.connected = threading.Event()

    # -- MQTT thread -----------------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            log.error("broker refused the ingestor: %s", rc)
            return
        client.subscribe(shared_subscription("readings", self.cfg.share_group), qos=1)
        self.connected.set()
        log.info("connected to %s:%d, subscribed", self.cfg.mqtt_host, self.cfg.mqtt_port)

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

    def _keys(self, *, fresh: bool = False) -> Keyring:
        now = time.monotonic()
        # `fresh`: at most one extra small query per batch that names an unknown key
        stale = fresh or now - self._keyring_at > self.cfg.keyring_refresh_s
        if self._keyring is None or stale:
            self._keyring = load_keyring(self._db())
            self._db().commit()
            self._keyring_at = now
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

    def _store(self, items: list[Candidate | Quarantine]) -> BatchResult:
        try:
            return store_batch(self._db(), items)
        except RETRYABLE:
            raise
        except psycopg.Error as exc:
            if len(items) == 1:
                raise
            # Not the connection: some message's rows are refused. Isolate it.
            log.warning("batch refused (%s); retrying message by message", exc)
            total = BatchResult()
            for item in items:
                total.merge(self._store_one(item))
            return total

    def _store_one(self, item: Candidate | Quarantine) -> BatchResult:
        try:
            return store_batch(self._db(), [item])
        except RETRYABLE:
            raise
        except psycopg.Error as exc:
            log.error("quarantining a message the database refuses: %s", exc)
            q = Quarantine(item.msg, QuarantineReason.STORE_ERROR, str(exc)[:500],
                           item.envelope_hash, agent_id=item.agent_id, seq=item.seq)
            return store_batch(self._db(), [q])

    def process(self, batch: list[Incoming]) -> BatchResult:
        """Classify and store one batch, retrying through database outages. Returns after
        the commit; the caller acknowledges."""
        attempt = 0
        while True:
            try:
                keyring = self._keys()
                items = [classify(m, keyring, limits=self.cfg.limits) for m in batch]
                if any(isinstance(i, Quarantine) and i.reason is QuarantineReason.UNKNOWN_KEY
                       for i in items):
                    # a newly registered agent: look again before quarantining its data
                    keyring = self._keys(fresh=True)
                    items = [classify(m, keyring, limits=self.cfg.limits) for m in batch]
                return self._store(items)
            except RETRYABLE as exc:
                self.stats.db_retries += 1
                M_DB_RETRIES.inc()
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                delay = random.uniform(0, min(5.0, 0.1 * 2 ** attempt))
                attempt += 1
                log.warning("database unavailable (%s); retrying in %.1f s, nothing acked",
                            str(exc).strip().splitlines()[0] if str(exc) else exc, delay)
                if self._stop.wait(delay):
                    raise

    def _acknowledge(self, batch: list[Incoming], result: BatchResult) -> None:
        for m in batch:
            self.client.ack(m.mid, 1)
        for agent_id, upto in result.committed_upto.items():
            self.client.publish(topic(agent_id, "ack"), encode_ack(upto), qos=1, retain=True)

    def run_worker(self) -> None:
        while not self._stop.is_set():
            batch = self._next_batch()
            if not batch:
                continue
            started = time.monotonic()
            try:
                result = self.process(batch)
            except RETRYABLE:
                return  # stopping during an outage: nothing was acked, the broker redelivers
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
            self.stats.last_batch_ms = (committed - started) * 1000
            self.stats.commit_to_ack_ms = (time.monotonic() - committed) * 1000
            M_ENVELOPES.inc(result.stored)
            M_READINGS.inc(result.readings)
            M_DUPLICATES.inc(result.duplicates)
            M_GAPS.inc(result.gaps)
            M_BATCH.observe(committed - started)
            M_ACK_LAG.observe(self.stats.commit_to_ack_ms / 1000)

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
            except psycopg.Error as exc:
                log.warning("transparency log step failed (%s); retrying next cadence", exc)
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def start(self) -> None:
        self.client.connect_async(self.cfg.mqtt_host, self.cfg.mqtt_port, keepalive=30)
        self.client.loop_start()
        self._worker = threading.Thread(target=self.run_worker, name="ingest-worker", daemon=True)
        self._worker.start()
        self._logger: threading.Thread | None = None
        if self.cfg.log_key is not None:
            self._logger = threading.Thread(target=self.run_log, name="tlog", daemon=True)
            self._logger.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._worker.join(timeout)
        if self._logger is not None:
            self._logger.join(timeout)
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
