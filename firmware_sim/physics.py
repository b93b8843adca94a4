"""Electrical physics of the grid, vectorised over minutes x customers.

Theory of operation. Loads are constant-power: profiles.py says what each customer draws
(kW, kvar) in a minute; here that becomes currents, voltages and losses:

- customer i draws S_i = |P_i + jQ_i| and puts share W[i, k] of it on phase k (one-hot for
  single-phase customers, a fixed slight imbalance for three-phase ones); I_ik = S_i W_ik / V_ik;
- the transformer's phase current is the sum of its customers' phase currents (magnitudes:
  customer power factors are close, so the phasor sum is within a few percent and errs high);
- voltage at a transformer = nominal x (1 + tap) - MV feeder drop (grows with distance along
  the feeder and with the feeder's load: long rural feeders sag at the far end) - transformer
  impedance drop (grows with its phase current); a customer sees that minus the drop in its
  service cable (loop resistance x current);
- technical loss per transformer = no-load loss + load loss x (S / S_rated)^2 + service-cable
  I^2 R losses, in W; the transformer's input (what the balance meter measures) is the true
  customer net load plus that loss. A feeder head measures the sum of its transformers.

One fixed-point pass (I from nominal V, then V from I, then I from V) is enough: the loads
move V by a few percent and the loss by a fraction of that; every energy total is computed from
the same numbers, so the balance closes exactly whatever the approximation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from firmware_sim.grid import Grid
from firmware_sim.profiles import hash_uniform

F64 = NDArray[np.float64]
V_NOMINAL = 230.0
V_FLOOR = 0.5  # per unit
TAP_BOOST = 0.025  # off-load tap at +2.5 %, the usual setting for LV networks
MV_DROP_PER_KM_MVA = 0.003  # fraction of nominal per km of feeder per MVA carried
TX_IMPEDANCE = 0.03  # resistive+reactive drop at rated current, fraction of nominal
CABLE_OHM_PER_M = 0.00064  # 50 mm² Al service cable, one conductor


@dataclass(frozen=True)
class Topology:
    """Index arrays that map customers -> transformers -> feeders, built once per grid."""

    tx_of: NDArray[np.intp]  # (N,) transformer index of each customer
    feeder_of_tx: NDArray[np.intp]  # (X,)
    phase_w: F64  # (N, 3) share of each customer's power per phase
    r_loop: F64  # (N, 3) loop resistance per phase conductor path, ohm
    rating_va: F64  # (X,)
    nll_w: F64  # (X,)
    ll_w: F64  # (X,)
    dist_km: F64  # (X,)
    n_feeders: int

    @classmethod
    def from_grid(cls, grid: Grid) -> Topology:
        tx_index = {t.transformer_id: i for i, t in enumerate(grid.transformers)}
        fd_index = {f.feeder_id: i for i, f in enumerate(grid.feeders)}
        n = len(grid.customers)
        w = np.zeros((n, 3))
        r = np.zeros((n, 3))
        imbalance = hash_uniform(
            grid.seed, 7, np.arange(n, dtype=np.int64)[:, None], np.arange(3, dtype=np.int64)[None]
        )
        for i, c in enumerate(grid.customers):
            # Cables are sized for the customer: at 3x its mean load the drop stays <= 4 %.
            design_a = 3.0 * c.base_kw * 1000.0 / (V_NOMINAL * c.phases)
            rc = min(CABLE_OHM_PER_M * c.service_m, 0.04 * V_NOMINAL / max(design_a, 1.0))
            if c.phase is None:
                share = 1.0 + 0.1 * (imbalance[i] - 0.5)
                w[i] = share / share.sum()
                r[i] = rc  # balanced-ish three-phase: neutral carries little
            else:
                w[i, c.phase] = 1.0
                r[i, c.phase] = 2.0 * rc  # single-phase: out on the phase, back on the neutral
        return cls(
            tx_of=np.array([tx_index[c.transformer_id] for c in grid.customers], np.intp),
            feeder_of_tx=np.array([fd_index[t.feeder_id] for t in grid.transformers], np.intp),
            phase_w=w,
            r_loop=r,
            rating_va=np.array([t.rating_kva * 1000.0 for t in grid.transformers]),
            nll_w=np.array([t.no_load_loss_w for t in grid.transformers]),
            ll_w=np.array([t.load_loss_w for t in grid.transformers]),
            dist_km=np.array([t.distance_km for t in grid.transformers]),
            n_feeders=len(grid.feeders),
        )

    @property
    def n_tx(self) -> int:
        return len(self.rating_va)


@dataclass(frozen=True)
class Flows:
    """Electrical state for T minutes. Customer arrays are the *true* flows (what the wires
    carry); what meters report is decided in theft.py."""

    p_w: F64  # (T, N) true net active power, + = import
    q_var: F64  # (T, N)
    v_cust: F64  # (T, N, 3) voltage at the customer's meter per phase
    i_cust: F64  # (T, N, 3) current per phase
    p_tx_w: F64  # (T, X) transformer input = balance meter
    q_tx_var: F64  # (T, X)
    v_tx: F64  # (T, X, 3)
    i_tx: F64  # (T, X, 3)
    loss_w: F64  # (T, X) technical loss: transformer + service cables
    p_fd_w: F64  # (T, F) feeder head
    q_fd_var: F64  # (T, F)


def _sum_by(values: F64, index: NDArray[np.intp], size: int) -> F64:
    """Sum axis 1 of (T, N, ...) into (T, size, ...) groups given by `index` (N,).

    A product with a one-hot matrix: BLAS makes it ~20x faster than np.add.at."""
    onehot = np.zeros((len(index), size))
    onehot[np.arange(len(index)), index] = 1.0
    out: F64 = np.einsum("tn...,nx->tx...", values, onehot, optimize=True)
    return out


def tx_voltage(topo: Topology, i_tx: F64, s_fd_va: F64) -> F64:
    """(T, X, 3) transformer secondary voltage from its phase currents and the feeder load."""
    mv_drop = MV_DROP_PER_KM_MVA * topo.dist_km[None, :] * (s_fd_va[:, topo.feeder_of_tx] / 1e6)
    i_rated = topo.rating_va / (3.0 * V_NOMINAL)
    tx_drop = TX_IMPEDANCE * i_tx / i_rated[None, :, None]
    # Clamp: past half voltage real protection trips; the model must not go negative.
    return V_NOMINAL * np.maximum(1.0 + TAP_BOOST - mv_drop[:, :, None] - tx_drop, V_FLOOR)


def solve(topo: Topology, p_w: F64, q_var: F64) -> Flows:
    """Currents, voltages and losses for true customer powers of shape (T, N)."""
    s_va = np.hypot(p_w, q_var)
    i0 = s_va[:, :, None] * topo.phase_w[None] / V_NOMINAL
    i_tx0 = _sum_by(i0, topo.tx_of, topo.n_tx)
    s_tx0 = np.hypot(_sum_by(p_w, topo.tx_of, topo.n_tx), _sum_by(q_var, topo.tx_of, topo.n_tx))
    s_fd0 = _sum_by(s_tx0, topo.feeder_of_tx, topo.n_feeders)
    v_tx = tx_voltage(topo, i_tx0, s_fd0)
    v_cust = np.maximum(v_tx[:, topo.tx_of, :] - i0 * topo.r_loop[None], V_FLOOR * V_NOMINAL)
    i = np.where(topo.phase_w[None] > 0, s_va[:, :, None] * topo.phase_w[None] / v_cust, 0.0)
    cable_w = (i * i * topo.r_loop[None]).sum(axis=2)
    p_tx = _sum_by(p_w + cable_w, topo.tx_of, topo.n_tx)
    q_tx = _sum_by(q_var, topo.tx_of, topo.n_tx)
    s_tx = np.hypot(p_tx, q_tx)
    tx_loss = topo.nll_w[None] + topo.ll_w[None] * (s_tx / topo.rating_va[None]) ** 2
    loss = tx_loss + _sum_by(cable_w, topo.tx_of, topo.n_tx)
    p_in = p_tx + tx_loss
    return Flows(
        p_w=p_w,
        q_var=q_var,
        v_cust=v_cust,
        i_cust=i,
        p_tx_w=p_in,
        q_tx_var=q_tx,
        v_tx=v_tx,
        i_tx=_sum_by(i, topo.tx_of, topo.n_tx),
        loss_w=loss,
        p_fd_w=_sum_by(p_in, topo.feeder_of_tx, topo.n_feeders),
        q_fd_var=_sum_by(q_tx, topo.feeder_of_tx, topo.n_feeders),
    )


def neutral_current(i_phases: F64) -> F64:
    """|I1 + a I2 + a^2 I3| for currents at a common angle, 120° apart: the imbalance residue.
    For a single-phase load this is just its phase current."""
    a = np.exp(2j * np.pi / 3.0)
    phasor = i_phases[..., 0] + a * i_phases[..., 1] + a * a * i_phases[..., 2]
    out: F64 = np.abs(phasor)
    return out


def frequency_hz(seed: int, minutes: NDArray[np.int64]) -> F64:
    """System frequency: the same for every meter on the grid, wandering ±0.05 Hz."""
    return 50.0 + 0.1 * (hash_uniform(seed, 9, minutes, np.zeros(1, np.int64)) - 0.5)
