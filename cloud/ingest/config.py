"""What an ingestor is told: the database, the broker and its TLS identity, batching, the
transparency-log cadence, the plausibility limits and the health/metrics endpoint."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cloud.ingest.health import STALE_AFTER_S
from cloud.ingest.limits import Limits
from cloud.ingest.writer import QUARANTINE_BUDGET_BYTES


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
