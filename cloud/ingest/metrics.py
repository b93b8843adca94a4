"""What an ingestor counts: for Prometheus (`M_*`, one registry per process) and for its own
status line and tests (`IngestStats`, one per Ingestor)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge, Histogram

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
