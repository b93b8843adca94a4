"""A small simulated grid in a migrated database: topology via `import_topology`, readings via
binary COPY from the simulator's `MeterReader` at 15-min instants (what the edge would poll),
plus the same simulation sampled in memory by `wattrail.simfeed` to compare against."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from cloud.analytics.pipeline.feed import Feed
from cloud.store.migrate import migrate
from cloud.store.topology import import_topology
from firmware_sim.grid_file import write_grid
from firmware_sim.grid_service import DEFAULT_START_S
from firmware_sim.meters import MeterReader
from firmware_sim.simulation import Simulation
from firmware_sim.truth import build_truth
from protocols.reading import MEASURED_FIELDS, Quality, Reading
from wattrail import simfeed

STEP = 900
DAYS = 2
K = DAYS * 86400 // STEP + 1
START = datetime.fromtimestamp(DEFAULT_START_S, UTC)
END = datetime.fromtimestamp(DEFAULT_START_S + (K - 1) * STEP, UTC)
OUTAGE = (100, 110)  # instants during which one transformer's customers are silent
_TYPES = ["text", "timestamptz", *["float8"] * len(MEASURED_FIELDS), "int4", "int2", "text", "int8"]


def make_sim() -> Simulation:
    # 2 regions x 1 feeder x 2 transformers, 20 % thieves and some meter replacements
    from firmware_sim.grid import generate_grid
    from firmware_sim.grid_service import THEFT_HORIZON_MIN
    from firmware_sim.theft import plan_thefts

    grid = generate_grid(seed=31, meters=80, feeders=2, transformers=4, regions=2)
    cs = grid.customers
    plan = plan_thefts(grid.seed, [c.meter_id for c in cs], [c.pv_kwp > 0 for c in cs],
                       [c.phases for c in cs], int(DEFAULT_START_S // 60), THEFT_HORIZON_MIN, 0.2, 0.03)
    return Simulation(grid, DEFAULT_START_S, plan)


def _take(arr: Any, order: np.ndarray) -> Any:
    from cloud.analytics.pipeline.feed import MeterArrays

    return MeterArrays(*(getattr(arr, f)[order] for f in MeterArrays.__dataclass_fields__))


def sorted_feed(feed: Feed) -> Feed:
    """The same Feed with every level in id order, as fetch_feed returns it (simfeed keeps the
    grid file's order)."""
    from cloud.analytics.pipeline.feed import Topology

    t = feed.topology
    om, ot, of, orr = (np.argsort(np.array(ids), kind="stable") for ids in
                       (t.meter_ids, t.transformer_ids, t.feeder_ids, t.region_ids))
    inv = [np.argsort(o) for o in (ot, of, orr)]  # old index -> new index
    topo = Topology(
        [t.meter_ids[i] for i in om], [t.transformer_ids[i] for i in ot],
        [t.feeder_ids[i] for i in of], [t.region_ids[i] for i in orr],
        inv[0][t.tx_of[om]], inv[1][t.feeder_of_tx[ot]], inv[2][t.region_of_feeder[of]],
        t.cls[om], t.phases[om], t.has_pv[om], t.tariff_per_kwh[om], t.rating_va[ot],
        t.no_load_w[ot], t.load_loss_w[ot])
    return Feed(feed.t0_s, feed.step_s, _take(feed.customers, om), _take(feed.balance, ot),
                _take(feed.feeders, of), topo)


@dataclass
class Loaded:
    dsn: str
    grid_file: Path
    truth: dict[str, Any]
    sim_feed: Feed  # the same simulation sampled by simfeed, with the same readings missing
    dropped: set[tuple[str, int]]  # (meter id, instant) not written / written as COMMS_LOST
    outage_tx: str


def write_readings(conn: psycopg.Connection, readings: list[Reading], batch: int) -> None:
    with conn.cursor() as cur, cur.copy(
        "COPY readings (meter_id, ts, " + ", ".join(MEASURED_FIELDS)
        + ", status, quality, provenance, import_batch) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(_TYPES)
        for r in readings:
            cp.write_row((r.meter_id, datetime.fromtimestamp(r.ts_ms / 1000, UTC),
                          *(getattr(r, f) for f in MEASURED_FIELDS), r.status, int(r.quality),
                          "imported", batch))


@pytest.fixture(scope="module")
def loaded(services: Any, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    """Module-scoped (the simulation takes seconds): tests must not change readings/topology."""
    import uuid

    name = f"t_an_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.dsn_admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    dsn = services.dsn_for(name)
    tmp = tmp_path_factory.mktemp("grid")
    sim_db, sim_mem = make_sim(), make_sim()
    grid_file = tmp / "grid.json"
    write_grid(sim_db.grid, grid_file)
    rng = np.random.default_rng(5)
    reader = MeterReader(sim_db)
    ids = list(reader.index)
    cust_ids = [c.meter_id for c in sim_db.grid.customers]
    # an outage: every customer of the last transformer silent for OUTAGE instants
    out_tx = sim_db.grid.transformers[-1].transformer_id
    dark = {c.meter_id for c in sim_db.grid.customers if c.transformer_id == out_tx}
    dropped: set[tuple[str, int]] = set()
    unasked: set[tuple[str, int]] = set()  # dropped without a COMMS_LOST row
    rows: list[Reading] = []
    for k in range(K):
        t = DEFAULT_START_S + k * STEP
        for mid in ids:
            r = reader.reading(mid, t)
            if mid in dark and OUTAGE[0] <= k < OUTAGE[1]:
                # the gateway, on its battery, answers "target device failed to respond": the
                # edge records each failed poll (no row at all would be unknown, not an outage)
                dropped.add((mid, k))
                rows.append(Reading(mid, r.ts_ms, quality=Quality.COMMS_LOST))
                continue
            if mid in cust_ids and rng.random() < 0.02:
                dropped.add((mid, k))
                if rng.random() < 0.5:  # the edge recorded the failed poll: not a reading
                    rows.append(Reading(mid, r.ts_ms, quality=Quality.COMMS_LOST))
                else:
                    unasked.add((mid, k))
                continue
            rows.append(r)
            if k == 3 and mid == cust_ids[0]:  # a second, later poll of the same instant
                rows.append(Reading(mid, r.ts_ms + 100_000, import_wh=1.0, export_wh=0.0, v_l1=1.0))
    feed = simfeed.sample(sim_mem, STEP, K)
    index = {m: i for i, m in enumerate(feed.topology.meter_ids)}
    for mid, k in dropped:
        feed.customers.present[index[mid], k] = False
    for mid, k in unasked:
        feed.customers.polled[index[mid], k] = False
    simfeed.blank_missing(feed.customers)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        import_topology(conn, grid_file)
        batch = conn.execute("INSERT INTO import_batches (file_name, sha256, rows, inserted)"
                             " VALUES ('sim', %s, %s, %s) RETURNING id",
                             [b"\x01" * 32, len(rows), len(rows)]).fetchone()[0]  # type: ignore[index]
        write_readings(conn, rows, batch)
    try:
        yield Loaded(dsn, grid_file, build_truth(sim_db), sorted_feed(feed), dropped, out_tx)
    finally:
        with psycopg.connect(services.dsn_admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
