"""The grid file: JSON that `write_grid` writes and `load_grid` reads (docs/grid-file.md).

The cloud's topology import reads the same file, so the format is versioned and validated on
load with messages that name the offending record.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from firmware_sim.grid import METER_MODELS, Customer, Feeder, Grid, Region, Transformer

FORMAT_NAME = "wattrail-grid"
FORMAT_VERSION = 1


def grid_to_dict(grid: Grid) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "seed": grid.seed,
        "currency": grid.currency,
        "regions": [asdict(r) for r in grid.regions],
        "feeders": [asdict(f) for f in grid.feeders],
        "transformers": [asdict(t) for t in grid.transformers],
        "customers": [asdict(c) for c in grid.customers],
        "gateways": [
            {"gateway_id": g, "units": [{"unit_id": u, "meter_id": m} for u, m in units]}
            for g, units in grid.gateways().items()
        ],
    }


def grid_from_dict(data: dict[str, Any]) -> Grid:
    if data.get("format") != FORMAT_NAME or data.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"not a {FORMAT_NAME} v{FORMAT_VERSION} file (format={data.get('format')!r}, "
            f"version={data.get('version')!r}); write it with firmware_sim.grid.write_grid"
        )
    grid = Grid(
        seed=int(data["seed"]),
        currency=str(data["currency"]),
        regions=tuple(Region(**r) for r in data["regions"]),
        feeders=tuple(Feeder(**f) for f in data["feeders"]),
        transformers=tuple(Transformer(**t) for t in data["transformers"]),
        customers=tuple(Customer(**c) for c in data["customers"]),
    )
    validate_grid(grid)
    return grid


def validate_grid(grid: Grid) -> None:
    """Reject a grid the simulator cannot serve, saying which record is wrong."""
    tx_gateway = {t.transformer_id: t.gateway_id for t in grid.transformers}
    tx_ids = set(tx_gateway)
    seen: set[tuple[str, int]] = set()
    for c in grid.customers:
        if c.transformer_id not in tx_ids:
            raise ValueError(f"customer {c.meter_id}: unknown transformer {c.transformer_id!r}")
        if c.gateway_id != tx_gateway[c.transformer_id]:
            raise ValueError(f"customer {c.meter_id}: gateway must be its transformer's gateway")
        if c.meter_model not in METER_MODELS:
            raise ValueError(f"customer {c.meter_id}: meter_model must be one of {METER_MODELS}")
        if (c.phases == 1) != (c.phase is not None):
            raise ValueError(f"customer {c.meter_id}: single-phase needs phase 0-2, 3-phase None")
        if not 2 <= c.unit_id <= 247 or (c.gateway_id, c.unit_id) in seen:
            raise ValueError(f"customer {c.meter_id}: unit id {c.unit_id} invalid or reused")
        seen.add((c.gateway_id, c.unit_id))


def write_grid(grid: Grid, path: str | Path) -> None:
    Path(path).write_text(json.dumps(grid_to_dict(grid), indent=1) + "\n", encoding="utf-8")


def load_grid(path: str | Path) -> Grid:
    return grid_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
