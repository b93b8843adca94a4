"""Grid generation and the grid file: deterministic, addressable, round-trips."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from firmware_sim.grid import MAX_CUSTOMERS_PER_GATEWAY, METER_MODELS, generate_grid
from firmware_sim.grid_file import grid_from_dict, grid_to_dict, load_grid, write_grid


def test_same_seed_same_grid_and_different_seed_differs():
    a = grid_to_dict(generate_grid(5, 300, 4, 8))
    b = grid_to_dict(generate_grid(5, 300, 4, 8))
    c = grid_to_dict(generate_grid(6, 300, 4, 8))
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(c)


def test_structure_and_addressing(small_grid):
    g = small_grid
    assert len(g.customers) == 150
    assert {c.meter_model for c in g.customers} <= set(METER_MODELS)
    for gw, units in g.gateways().items():
        ids = [u for u, _ in units]
        assert len(ids) == len(set(ids)), gw
        assert all(1 <= u <= 247 for u in ids)
    for t in g.transformers:
        units = dict(g.gateways()[t.gateway_id])
        assert units[1] == t.balance_meter_id
        assert t.rating_kva > 0 and 0 < t.no_load_loss_w < t.load_loss_w
    for c in g.customers:
        assert (c.phases == 1) == (c.meter_model == "sdm120")
        assert (c.phase is None) == (c.phases == 3)
    assert any(f.rural for f in g.feeders) and any(not f.rural for f in g.feeders)
    assert len(set(g.meter_models())) == 150 + len(g.transformers) + len(g.feeders)


def test_round_trip_through_file(tmp_path, small_grid):
    path = tmp_path / "grid.json"
    write_grid(small_grid, path)
    assert load_grid(path) == small_grid
    data = json.loads(path.read_text())
    assert data["format"] == "wattrail-grid" and data["version"] == 1
    assert sum(len(gw["units"]) for gw in data["gateways"]) == len(small_grid.meter_models())


def test_too_many_meters_for_the_unit_ids():
    with pytest.raises(ValueError, match="at least 3 transformers"):
        generate_grid(1, 2 * MAX_CUSTOMERS_PER_GATEWAY + 1, 1, 2)


def _bad(small_grid, **changes):
    data = grid_to_dict(small_grid)
    data["customers"][0].update(changes)
    return data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"transformer_id": "nope"}, "unknown transformer"),
        ({"meter_model": "acme9000"}, "meter_model"),
        ({"gateway_id": "GW-elsewhere"}, "transformer's gateway"),
        ({"unit_id": 1}, "unit id"),
        ({"unit_id": 248}, "unit id"),
        ({"phases": 3, "phase": 0}, "single-phase"),
    ],
    ids=[
        "unknown-transformer",
        "unknown-model",
        "wrong-gateway",
        "balance-unit",
        "unit-too-high",
        "phase-mismatch",
    ],
)
def test_invalid_grid_files_are_rejected(small_grid, changes, message):
    with pytest.raises(ValueError, match=message):
        grid_from_dict(_bad(small_grid, **changes))


def test_wrong_format_is_rejected(small_grid):
    data = grid_to_dict(small_grid)
    with pytest.raises(ValueError, match="wattrail-grid v1"):
        grid_from_dict({**data, "version": 2})


def test_duplicate_unit_on_a_gateway_is_rejected(small_grid):
    c0 = small_grid.customers[0]
    twin = next(c for c in small_grid.customers[1:] if c.gateway_id == c0.gateway_id)
    data = grid_to_dict(replace(small_grid, customers=(c0, replace(twin, unit_id=c0.unit_id))))
    with pytest.raises(ValueError, match="reused"):
        grid_from_dict(data)
