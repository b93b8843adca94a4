"""A small simulated grid (66 meters, 4 transformers, 2 regions, 5 days at 15 min) in a migrated
database, with its archive corrupted by SQL the way field records go wrong: two meters recorded
on the other transformer of their feeder, two single-phase meters on the wrong phase, and one
reporting meter whose record (meter and customer) is missing. Readings come from the
simulator's `MeterReader` at 15-min instants (what the edge would poll) by binary COPY.

Each test module gets its own copy of the database (tests there accept corrections)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud.store.migrate import migrate
from cloud.store.topology import import_topology
from firmware_sim.grid import generate_grid
from firmware_sim.grid_file import write_grid
from firmware_sim.grid_service import DEFAULT_START_S
from firmware_sim.meters import MeterReader
from firmware_sim.simulation import Simulation
from protocols.reading import Reading
from tests.integration.analytics.conftest import write_readings

STEP = 900
DAYS = 5
K = DAYS * 86400 // STEP + 1
START = datetime.fromtimestamp(DEFAULT_START_S, UTC)
END = datetime.fromtimestamp(DEFAULT_START_S + (K - 1) * STEP, UTC)


@dataclass
class Corrupted:
    dsn: str
    grid_file: Path
    true_tx: dict[str, str]        # meter -> the transformer it really hangs on
    true_phase: dict[str, int]     # single-phase meter -> its real phase
    moved: dict[str, str]          # meter -> the wrong transformer recorded for it
    rephased: dict[str, int]       # meter -> the wrong phase recorded for it
    unrecorded: str                # a meter that reports but has no record


def _corrupt(conn: psycopg.Connection[Any], sim: Simulation) -> tuple[dict[str, str], dict[str, int], str]:
    cs = sim.grid.customers
    by_feeder: dict[str, list[str]] = {}
    for t in sim.grid.transformers:
        by_feeder.setdefault(t.feeder_id, []).append(t.transformer_id)
    moved: dict[str, str] = {}
    # one meter of each of two transformers, recorded on the feeder's other transformer
    for tx_ids in list(by_feeder.values())[:2]:
        a, b = tx_ids[:2]
        mid = next(c.meter_id for c in cs if c.transformer_id == a and c.meter_id not in moved)
        moved[mid] = b
    rephased: dict[str, int] = {}
    for c in cs:
        if c.phases == 1 and c.phase is not None and c.meter_id not in moved and len(rephased) < 2:
            rephased[c.meter_id] = (c.phase + 1) % 3
    unrecorded = next(c.meter_id for c in reversed(cs)
                      if c.meter_id not in moved and c.meter_id not in rephased)
    with conn.transaction():
        for mid, tx in moved.items():
            conn.execute("UPDATE customers SET transformer_id = %s WHERE customer_id ="
                         " (SELECT customer_id FROM meters WHERE meter_id = %s)", [tx, mid])
            conn.execute("UPDATE meters SET transformer_id = %s WHERE meter_id = %s", [tx, mid])
        for mid, ph in rephased.items():
            conn.execute("UPDATE customers SET phase = %s WHERE customer_id ="
                         " (SELECT customer_id FROM meters WHERE meter_id = %s)", [ph, mid])
        cust = conn.execute("SELECT customer_id FROM meters WHERE meter_id = %s", [unrecorded]).fetchone()
        assert cust is not None
        conn.execute("DELETE FROM meter_installations WHERE meter_id = %s", [unrecorded])
        conn.execute("DELETE FROM meters WHERE meter_id = %s", [unrecorded])
        conn.execute("DELETE FROM customers WHERE customer_id = %s", [cust[0]])
    return moved, rephased, unrecorded


def build_corrupted(dsn: str, tmp: Path) -> tuple[Simulation, Path, dict[str, str], dict[str, int], str]:
    """Migrate the (empty) database at `dsn`, load the grid and its readings, corrupt the
    archive; (simulation, grid file, moved, rephased, unrecorded)."""
    grid = generate_grid(seed=41, meters=60, feeders=2, transformers=4, regions=2)
    sim = Simulation(grid, DEFAULT_START_S)
    grid_file = tmp / "grid.json"
    write_grid(grid, grid_file)
    reader = MeterReader(sim)
    rows: list[Reading] = [reader.reading(mid, DEFAULT_START_S + k * STEP)
                           for k in range(K) for mid in reader.index]
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        import_topology(conn, grid_file)
        batch = conn.execute("INSERT INTO import_batches (file_name, sha256, rows, inserted)"
                             " VALUES ('sim', %s, %s, %s) RETURNING id",
                             [b"\x02" * 32, len(rows), len(rows)]).fetchone()[0]  # type: ignore[index]
        write_readings(conn, rows, batch)
        moved, rephased, unrecorded = _corrupt(conn, sim)
    return sim, grid_file, moved, rephased, unrecorded


@pytest.fixture(scope="module")
def corrupted(services: Any, template_db: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corrupted]:
    name = f"t_ar_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(services.dsn_admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    dsn = services.dsn_for(name)
    sim, grid_file, moved, rephased, unrecorded = build_corrupted(dsn, tmp_path_factory.mktemp("archive"))
    grid = sim.grid
    try:
        yield Corrupted(dsn, grid_file, {c.meter_id: c.transformer_id for c in grid.customers},
                        {c.meter_id: c.phase for c in grid.customers if c.phases == 1},
                        moved, rephased, unrecorded)
    finally:
        with psycopg.connect(services.dsn_admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
