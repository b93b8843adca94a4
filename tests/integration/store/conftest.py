"""A migrated database per test, and a small grid imported into it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cloud.store.migrate import migrate
from cloud.store.topology import import_topology
from firmware_sim.grid import Grid, generate_grid
from firmware_sim.grid_file import write_grid


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_dsn, autocommit=True) as c:
        migrate(c)
        yield c


@pytest.fixture
def grid() -> Grid:
    return generate_grid(seed=7, meters=12, feeders=2, transformers=3)


@pytest.fixture
def grid_file(tmp_path: Path, grid: Grid) -> Path:
    path = tmp_path / "grid.json"
    write_grid(grid, path)
    return path


@pytest.fixture
def archive(conn: psycopg.Connection, grid_file: Path) -> psycopg.Connection:
    """`conn` with the grid's topology imported."""
    import_topology(conn, grid_file)
    return conn
