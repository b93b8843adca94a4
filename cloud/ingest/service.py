"""The ingestor process: subscribe, batch, verify, store, and only then acknowledge.

    broker ──$share/ingest/wattrail/v1/+/readings (QoS 1, manual ack)──▶ queue
    queue ──batch (≤ max_batch msgs or ≤ max_wait s)──▶ classify (keyring) ──▶ writer (one tx)
    commit ──▶ PUBACK every message of the batch ──▶ retained "committed up to N" per agent

Why manual ack: paho would otherwise PUBACK on receipt, and a crash before the commit would
lose the message for good (the broker forgets acknowledged messages). With manual ack, an
unacknowledged message is redelivered when we reconnect, and the agent resends anything the
cloud has not confirmed anyway. Quarantined messages are acknowledged too: they are stored
(in `quarantine`), so they are handled.

Faults, and which errors are retried rather than blamed on a message: cloud/ingest/pipeline.py
(`BatchPipeline`, which `Ingestor` extends with the broker). The worker beats a heartbeat at
every loop; `/healthz` (cloud/ingest/health.py) fails when it is dead or stuck.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from cloud.ingest.classify import Incoming
from cloud.ingest.config import IngestConfig
from cloud.ingest.health import Health, judge, serve
from cloud.ingest.metrics import (
    M_ACK_LAG,
    M_BATCH,
    M_DUPLICATES,
    M_ENVELOPES,
    M_GAPS,
    M_MESSAGES,
    M_QUARANTINED,
    M_READINGS,
    M_TREE,
    M_TRUNCATED,
    M_UNKNOWN_METERS,
    IngestStats,
)
from cloud.ingest.pipeline import BatchPipeline, Stopping
from cloud.ingest.writer import QUARANTINE_PREFIX_BYTES, BatchResult
from protocols.topics import encode_ack, shared_subscription, topic

log = logging.getLogger("wattrail.ingest")


class Ingestor(BatchPipeline):
    def __init__(self, cfg: IngestConfig) -> None:
        super().__init__(cfg)  # cfg, stats, the stop event, the database and keyring state
        self._queue: queue.Queue[Incoming] = queue.Queue()
        self._known_meters: set[str] = set()  # ids the archive had when last asked
        self._unknown_meters: set[str] = set()  # warned about once each (bounded below)
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

    def run_worker(self) -> None:
        while not self._stop.is_set():
            self._beat()
            batch = self._next_batch()
            if not batch:
                continue
            try:
                self._handle(batch)
            except Stopping:
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
