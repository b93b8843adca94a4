"""The electrical model on a grid small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_sim import physics
from firmware_sim.grid import Customer, Feeder, Grid, Region, Transformer
from firmware_sim.physics import CABLE_OHM_PER_M, V_NOMINAL, Topology


def _grid(phases: int) -> Grid:
    region = Region("R1", "R", "GW-SUB", 52.0, 5.0)
    feeder = Feeder("F1", "R1", "FDR-F1", "em24", 1, 10.0, True)
    tx = Transformer("T1", "F1", "GW-T1", "BAL-T1", "sdm630", 100.0, 145.0, 1250.0, 5.0, 52.0, 5.0)
    c = Customer(
        "M1",
        "C1",
        "industrial" if phases == 3 else "residential",
        False,
        "T1",
        "GW-T1",
        2,
        "sdm630" if phases == 3 else "sdm120",
        phases,
        None if phases == 3 else 1,
        50.0 if phases == 3 else 1.0,
        0.0,
        100.0,
        0.2,
        52.0,
        5.0,
    )
    return Grid(1, "EUR", (region,), (feeder,), (tx,), (c,))


@pytest.mark.parametrize("phases", [1, 3])
def test_losses_and_drops_by_hand(phases):
    grid = _grid(phases)
    topo = Topology.from_grid(grid)
    p, q = np.array([[30_000.0]]), np.array([[10_000.0]])
    f = physics.solve(topo, p, q)
    s = np.hypot(30_000.0, 10_000.0)
    # the transformer carries the customer's load plus the cable loss; its own loss on top
    cable = (f.i_cust[0, 0] ** 2 * topo.r_loop[0]).sum()
    s_tx = np.hypot(30_000.0 + cable, 10_000.0)
    tx_loss = 145.0 + 1250.0 * (s_tx / 100_000.0) ** 2
    assert f.loss_w[0, 0] == pytest.approx(tx_loss + cable, rel=1e-12)
    assert f.p_tx_w[0, 0] == pytest.approx(30_000.0 + cable + tx_loss, rel=1e-12)
    assert f.p_fd_w[0, 0] == pytest.approx(f.p_tx_w[0, 0], rel=1e-12)
    # currents carry the apparent power at the customer's voltage
    va = (f.v_cust[0, 0] * f.i_cust[0, 0]).sum()
    assert va == pytest.approx(s, rel=1e-12)
    if phases == 1:
        assert f.i_cust[0, 0, 0] == 0.0 and f.i_cust[0, 0, 2] == 0.0
        r_loop = 2 * min(CABLE_OHM_PER_M * 100.0, 0.04 * V_NOMINAL / (3 * 1000.0 / V_NOMINAL))
        assert topo.r_loop[0, 1] == pytest.approx(r_loop)
    # voltage: tap boost minus feeder, transformer and cable drops, all positive
    i_tx = f.i_tx[0, 0]
    assert np.all(f.v_tx[0, 0] < V_NOMINAL * (1 + physics.TAP_BOOST))
    assert np.all(f.v_cust[0, 0][i_tx > 0] < f.v_tx[0, 0][i_tx > 0])


def test_load_loss_grows_with_the_square_of_loading():
    topo = Topology.from_grid(_grid(3))
    zero = np.zeros((1, 1))
    for kw in (0.0, 25.0, 50.0, 100.0, 130.0):
        f = physics.solve(topo, np.array([[kw * 1000.0]]), zero)
        cable = (f.i_cust[0, 0] ** 2 * topo.r_loop[0]).sum()
        s_tx = kw * 1000.0 + cable  # unity power factor: S = P through the transformer
        expected = 145.0 + 1250.0 * (s_tx / 100_000.0) ** 2
        assert f.loss_w[0, 0] - cable == pytest.approx(expected, rel=1e-12)


def test_neutral_current_of_balanced_and_single_phase_loads():
    assert physics.neutral_current(np.array([10.0, 10.0, 10.0])) == pytest.approx(0.0, abs=1e-12)
    assert physics.neutral_current(np.array([0.0, 7.0, 0.0])) == pytest.approx(7.0)
    assert physics.neutral_current(np.array([10.0, 0.0, 10.0])) == pytest.approx(10.0)
