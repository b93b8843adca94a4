"""The dashboard tests' database: a small simulated grid analysed for real, plus a signed trail.

- Topology from `firmware_sim` (2 regions, 2 feeders, 4 transformers, 80 customers with
  coordinates; 20 % thieves), imported with `import_topology`.
- Two days of 15-min readings from the simulator's `MeterReader` (what the edge would poll),
  written with binary COPY as `imported` rows; one transformer's customers are silent for
  2.5 h (an outage: COMMS_LOST rows, as a battery-backed gateway reports them) and 2 % of
  customer readings are missing.
- One real analysis run (`cloud.analytics.batch.analyze`): loss, suspects, power quality,
  outages, regional summaries and forecast, exactly as production writes them.
- An agent with a real PKI whose envelopes are classified and stored by the ingest writer:
  seqs 1-5, then 8 (6 and 7 never arrive: a gap), a forged seq 9 (bad signature:
  quarantined), and a transparency-log head over the first ones.
- An engineer and an auditor token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.analytics.batch import analyze
from cloud.api.tokens import create_token
from cloud.ingest.classify import Incoming, classify
from cloud.ingest.registry import register_from_pki
from cloud.ingest.tlog import append_pending, sign_head
from cloud.ingest.writer import load_keyring, store_batch
from cloud.store.migrate import migrate
from cloud.store.topology import import_topology
from firmware_sim.grid import generate_grid
from firmware_sim.grid_file import write_grid
from firmware_sim.grid_service import DEFAULT_START_S, THEFT_HORIZON_MIN
from firmware_sim.meters import MeterReader
from firmware_sim.simulation import Simulation
from firmware_sim.theft import plan_thefts
from protocols.reading import MEASURED_FIELDS, Quality, Reading
from security.keys import load_private_key
from security.pki import init_ca, issue_agent
from tests.unit.security.envelopes import Agent

STEP = 900
DAYS = 2
K = DAYS * 86400 // STEP + 1
START = datetime.fromtimestamp(DEFAULT_START_S, UTC)
END = datetime.fromtimestamp(DEFAULT_START_S + (K - 1) * STEP, UTC)
OUTAGE = (100, 110)  # instants during which the last transformer's customers are silent
AGENT = "agent-dash-1"
_TYPES = ["text", "timestamptz", *["float8"] * len(MEASURED_FIELDS), "int4", "int2", "text", "int8"]


@dataclass
class Dataset:
    dsn: str
    run_id: int
    transformers: list[str]
    regions: list[str]
    suspects: list[str]  # meter ids with score >= 0.5, best first
    agent_id: str
    quarantined: int
    tokens: dict[str, str] = field(default_factory=dict)  # role -> secret


def _simulation() -> Simulation:
    grid = generate_grid(seed=31, meters=80, feeders=2, transformers=4, regions=2)
    cs = grid.customers
    plan = plan_thefts(grid.seed, [c.meter_id for c in cs], [c.pv_kwp > 0 for c in cs],
                       [c.phases for c in cs], int(DEFAULT_START_S // 60), THEFT_HORIZON_MIN, 0.2, 0.03)
    return Simulation(grid, DEFAULT_START_S, plan)


def _readings(sim: Simulation) -> list[Reading]:
    rng = np.random.default_rng(5)
    reader = MeterReader(sim)
    customers = {c.meter_id for c in sim.grid.customers}
    dark_tx = sim.grid.transformers[-1].transformer_id
    dark = {c.meter_id for c in sim.grid.customers if c.transformer_id == dark_tx}
    rows: list[Reading] = []
    for k in range(K):
        t = DEFAULT_START_S + k * STEP
        for mid in list(reader.index):
            r = reader.reading(mid, t)
            if mid in dark and OUTAGE[0] <= k < OUTAGE[1]:
                # the gateway (on its battery) reports each meter that no longer answers; no
                # row at all would be unknown data, not an outage
                rows.append(Reading(mid, r.ts_ms, quality=Quality.COMMS_LOST))
                continue
            if mid in customers and rng.random() < 0.02:
                rows.append(Reading(mid, r.ts_ms, quality=Quality.COMMS_LOST))
                continue
            rows.append(r)
    return rows


def _copy(conn: psycopg.Connection[Any], rows: list[Reading]) -> None:
    batch = conn.execute("INSERT INTO import_batches (file_name, sha256, rows, inserted) VALUES "
                         "('dashboard-test', %s, %s, %s) RETURNING id",
                         [b"\x02" * 32, len(rows), len(rows)]).fetchone()
    assert batch is not None
    with conn.cursor() as cur, cur.copy(
        "COPY readings (meter_id, ts, " + ", ".join(MEASURED_FIELDS)
        + ", status, quality, provenance, import_batch) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(_TYPES)
        for r in rows:
            cp.write_row((r.meter_id, datetime.fromtimestamp(r.ts_ms / 1000, UTC),
                          *(getattr(r, f) for f in MEASURED_FIELDS), r.status, int(r.quality),
                          "imported", batch[0]))


def _signed_trail(conn: psycopg.Connection[Any], tmp: Path, meter_id: str) -> int:
    pki = tmp / "pki"
    init_ca(pki)
    creds = issue_agent(pki, AGENT)
    register_from_pki(conn, pki)
    agent = Agent(AGENT, load_private_key(creds.signing_key))
    base_ms = int(time.time() * 1000) + 60_000  # after the certificate's notBefore

    def store(envs: list[bytes]) -> None:
        ring = load_keyring(conn)
        store_batch(conn, [classify(Incoming(f"wattrail/v1/{AGENT}/readings", e, i, int(time.time() * 1000)),
                                    ring) for i, e in enumerate(envs)])

    store([agent.envelope(sent_at_ms=base_ms + s * 60_000, meter=meter_id) for s in range(1, 6)])
    append_pending(conn)
    sign_head(conn, Ed25519PrivateKey.from_private_bytes(bytes(range(32))), now_ms=base_ms)
    forged = agent.envelope(seq=9, sent_at_ms=base_ms + 9 * 60_000, meter=meter_id, advance=False)
    forged = forged[:-1] + bytes([forged[-1] ^ 1])
    store([agent.envelope(seq=8, sent_at_ms=base_ms + 8 * 60_000, meter=meter_id), forged])
    row = conn.execute("SELECT count(*) FROM quarantine").fetchone()
    assert row is not None
    return int(row[0])


def build(conn: psycopg.Connection[Any], dsn: str, tmp: Path) -> Dataset:
    migrate(conn)
    sim = _simulation()
    grid_file = tmp / "grid.json"
    write_grid(sim.grid, grid_file)
    import_topology(conn, grid_file)
    _copy(conn, _readings(sim))
    run = analyze(conn, START, END, step_s=STEP)
    suspects = [str(r[0]) for r in conn.execute(
        "SELECT meter_id FROM analysis_suspects WHERE run_id = %s AND score >= 0.5 ORDER BY rank",
        [run.run_id])]
    quarantined = _signed_trail(conn, tmp, sim.grid.customers[0].meter_id)
    data = Dataset(dsn=dsn, run_id=run.run_id,
                   transformers=sorted(t.transformer_id for t in sim.grid.transformers),
                   regions=sorted(r.region_id for r in sim.grid.regions), suspects=suspects,
                   agent_id=AGENT, quarantined=quarantined)
    for role in ("engineer", "auditor"):
        data.tokens[role] = create_token(conn, role, f"dashboard test {role}").secret
    return data
