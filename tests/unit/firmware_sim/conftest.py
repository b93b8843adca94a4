"""Shared small grids for the simulator's unit tests (kept small: the suite must stay fast)."""

from __future__ import annotations

import pytest

from firmware_sim.grid import Grid, generate_grid

START_S = 1_767_225_600  # 2026-01-01T00:00:00Z, a Thursday
WEEK_S = 7 * 86_400


@pytest.fixture(scope="session")
def small_grid() -> Grid:
    return generate_grid(seed=11, meters=150, feeders=3, transformers=6)
