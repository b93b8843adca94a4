"""Energy adds up: balance meters = customers + technical loss (+ theft), feeders = transformers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from firmware_sim.simulation import EXP, IMP, Simulation
from firmware_sim.theft import plan_thefts
from firmware_sim.truth import build_truth, stolen_by_transformer, write_truth

from .conftest import START_S, WEEK_S


def _plan(grid, rate, replacement_rate=0.0):
    cs = grid.customers
    return plan_thefts(
        grid.seed,
        [c.meter_id for c in cs],
        [c.pv_kwp > 0 for c in cs],
        [c.phases for c in cs],
        START_S // 60,
        7 * 1440,
        rate,
        replacement_rate,
    )


def _week(grid, plan):
    sim = Simulation(grid, START_S, plan)
    before = sim.cust_rep.copy()
    sim.advance_to(START_S + WEEK_S)
    delta = sim.cust_rep - before
    tx_of = sim.topo.tx_of
    customers = np.bincount(tx_of, weights=delta[:, IMP] - delta[:, EXP], minlength=sim.topo.n_tx)
    balance = sim.tx_reg[:, IMP] - sim.tx_reg[:, EXP]
    return sim, balance, customers


def test_without_theft_the_gap_is_the_technical_loss(small_grid):
    sim, balance, customers = _week(small_grid, _plan(small_grid, 0.0))
    gap = balance - customers
    assert np.all(sim.loss_wh > 0)
    np.testing.assert_allclose(gap, sim.loss_wh, rtol=1e-3)
    # and the loss is physical: a few percent, not zero and not most of the energy
    assert 0.005 < sim.loss_wh.sum() / balance.sum() < 0.10


def test_feeder_head_is_the_sum_of_its_transformers(small_grid):
    sim, balance, _ = _week(small_grid, _plan(small_grid, 0.0))
    feeders = sim.fd_reg[:, IMP] - sim.fd_reg[:, EXP]
    expected = np.bincount(sim.topo.feeder_of_tx, weights=balance, minlength=len(feeders))
    np.testing.assert_allclose(feeders, expected, rtol=1e-9)


@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_with_theft_the_gap_is_loss_plus_ground_truth(small_grid, rate):
    plan = _plan(small_grid, rate, replacement_rate=0.02)
    sim, balance, customers = _week(small_grid, plan)
    stolen = stolen_by_transformer(sim)
    assert sum(e.is_theft for e in plan.events) == round(rate * len(small_grid.customers))
    assert stolen.sum() > 0
    np.testing.assert_allclose(balance - customers, sim.loss_wh + stolen, rtol=1e-6)
    # Theft changes what meters say, not what the wires carry: the balance meters read the
    # same as in the honest world, and the customers' meters are short by exactly the theft.
    _, honest_balance, honest_customers = _week(small_grid, _plan(small_grid, 0.0))
    np.testing.assert_allclose(balance, honest_balance, rtol=1e-12)
    np.testing.assert_allclose(honest_customers - customers, stolen, rtol=1e-6, atol=1e-3)


def test_truth_file_matches_the_simulation(tmp_path, small_grid):
    sim, _, _ = _week(small_grid, _plan(small_grid, 0.2))
    path = tmp_path / "truth.json"
    write_truth(sim, path)
    data = json.loads(path.read_text())
    assert data == json.loads(json.dumps(build_truth(sim)))
    thefts = [e for e in data["events"] if e["is_theft"]]
    assert data["totals"]["thieves"] == len({e["meter_id"] for e in thefts})
    assert data["totals"]["stolen_wh"] == pytest.approx(sum(e["stolen_wh"] for e in thefts))
    assert data["totals"]["technical_loss_wh"] == pytest.approx(sim.loss_wh.sum(), rel=1e-6)
    for e in thefts:
        assert e["start_ms"] < e["end_ms"]
        if e["type"] in ("h1", "h2", "h3", "h4", "bypass", "neutral", "magnetic", "rollback"):
            assert e["stolen_wh"] > 0, e  # these only ever under-report
        if e["type"] == "cover_open":
            assert e["stolen_wh"] == 0


def test_same_seed_same_registers_different_seed_differs(small_grid):
    from firmware_sim.grid import generate_grid

    a, _, _ = _week(small_grid, _plan(small_grid, 0.2))
    b, _, _ = _week(small_grid, _plan(small_grid, 0.2))
    np.testing.assert_array_equal(a.cust_rep, b.cust_rep)
    np.testing.assert_array_equal(a.tx_reg, b.tx_reg)
    other = generate_grid(12, 150, 3, 6)
    c, _, _ = _week(other, _plan(other, 0.2))
    assert not np.array_equal(a.tx_reg, c.tx_reg)


def test_step_size_does_not_change_the_result(small_grid):
    """Advancing in odd steps (as the server's ticker does) integrates the same minutes."""
    plan = _plan(small_grid, 0.2, 0.02)
    whole = Simulation(small_grid, START_S, plan)
    whole.advance_to(START_S + 2 * 86_400)
    steps = Simulation(small_grid, START_S, plan)
    t = float(START_S)
    for dt in [13.7, 59.9, 3600.1, 7.0, 86_400.0] * 3:
        t = min(t + dt, START_S + 2 * 86_400)
        steps.advance_to(t)
    steps.advance_to(START_S + 2 * 86_400)
    np.testing.assert_allclose(steps.cust_rep, whole.cust_rep, rtol=1e-12)
    np.testing.assert_allclose(steps.tx_reg, whole.tx_reg, rtol=1e-12)
