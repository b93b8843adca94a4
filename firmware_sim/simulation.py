"""The simulation state: energy registers of every meter, advanced minute by minute.

Time is in Unix seconds (UTC). Power is constant within each minute (profiles.py), so energy is
integrated exactly per minute; a reading in the middle of a minute adds the running minute pro
rata, which is what a real meter's register shows. `advance_to` integrates whole minutes in
vectorised chunks (minutes x meters) and splits a chunk where a register-rewriting event
(rollback, meter replacement) starts, so the jump is applied to the register value of that
exact minute.

Three register sets are kept per customer: *reported* (what the meter shows, theft and jumps
included), *true* (what the wires carried) and the per-event stolen energy; balance meters and
feeder heads only ever see true flows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from firmware_sim import physics, profiles
from firmware_sim.grid import Grid
from firmware_sim.physics import Flows, Topology
from firmware_sim.profiles import ProfileParams
from firmware_sim.theft import TheftPlan

F64 = NDArray[np.float64]
IMP, EXP, IMP_VARH, EXP_VARH = range(4)
CHUNK_MIN = 360  # minutes integrated per vectorised block: bounds memory at ~N x 360 x 3 floats


def _accumulate(p_w: F64, q_var: F64) -> F64:
    """(T, K) powers over one-minute steps -> (K, 4) Wh/varh import/export increments."""
    return (
        np.stack(
            [
                np.clip(p_w, 0, None).sum(0),
                np.clip(-p_w, 0, None).sum(0),
                np.clip(q_var, 0, None).sum(0),
                np.clip(-q_var, 0, None).sum(0),
            ],
            axis=1,
        )
        / 60.0
    )


@dataclass(frozen=True)
class MinuteState:
    """Everything instantaneous during one minute, for all meters."""

    minute: int
    flows: Flows  # true electrical state, T = 1
    p_rep_w: F64  # (N,) reported net active power
    q_rep_var: F64
    freq_hz: float
    status: NDArray[np.int64]  # (N,) theft/tamper flags


class Simulation:
    def __init__(self, grid: Grid, start_s: float, theft: TheftPlan | None = None) -> None:
        self.grid = grid
        self.topo = Topology.from_grid(grid)
        self.params = ProfileParams.from_grid(grid)
        self.theft = theft or TheftPlan(grid.seed, [])
        n, x, f = len(grid.customers), len(grid.transformers), len(grid.feeders)
        self.start_minute = int(start_s // 60)
        self.minute = self.start_minute  # registers hold the energy up to this minute's start
        age = profiles.hash_uniform(grid.seed, 13, np.arange(n, dtype=np.int64), np.zeros(1, np.int64))
        # Meters were installed years ago: start from plausible non-zero registers.
        self.cust_rep = np.zeros((n, 4))
        self.cust_rep[:, IMP] = self.params.base_kw * 1000.0 * 8760.0 * (0.2 + 3.0 * age)
        self.cust_rep[:, EXP] = self.params.pv_kwp * 1000.0 * 900.0 * age
        self.cust_rep[:, IMP_VARH] = self.cust_rep[:, IMP] * 0.3
        self.cust_true = np.zeros((n, 4))  # true energy since the simulation started
        self.tx_reg = np.zeros((x, 4))
        self.fd_reg = np.zeros((f, 4))
        self.loss_wh = np.zeros(x)
        self.stolen_wh = np.zeros(len(self.theft.events))
        self.jump_wh = np.zeros(len(self.theft.events))
        self._day_cache: dict[tuple[int, int], F64] = {}
        # (start minute, event index) of register-rewriting events, applied in time order
        self._jumps = sorted(
            (ev.start_min, i)
            for i, ev in enumerate(self.theft.events)
            if ev.kind in ("rollback", "replacement")
        )
        self._jump_pos = 0
        self._minute_state: MinuteState | None = None

    # -- profile access -------------------------------------------------------------------
    def day_load(self, customer: int, first_minute: int, count: int) -> F64:
        """One customer's true load (kW) over a day: the h4-h6 attacks read the whole day."""
        key = (customer, first_minute)
        if key not in self._day_cache:
            if len(self._day_cache) > 4096:
                self._day_cache.clear()
            mins = np.arange(first_minute, first_minute + count, dtype=np.int64)
            sub = ProfileParams(
                self.params.seed,
                self.params.kind_idx[[customer]],
                self.params.base_kw[[customer]],
                self.params.pv_kwp[[customer]],
                self.params.pf[[customer]],
                self.params.index[[customer]],
            )
            self._day_cache[key] = profiles.load_kw(sub, mins)[:, 0]
        return self._day_cache[key]

    def powers(self, minutes: NDArray[np.int64]) -> tuple[F64, F64, F64, F64]:
        """(true p, true q, reported p, reported q) in W / var, each (T, N)."""
        load = profiles.load_kw(self.params, minutes)
        pv = profiles.pv_kw(self.params, minutes)
        q = profiles.reactive_kvar(self.params, load)
        rep_load = self.theft.reported_load(minutes, load, self.day_load)
        ratio = np.divide(rep_load, load, out=np.zeros_like(load), where=load > 0)
        return (load - pv) * 1000.0, q * 1000.0, (rep_load - pv) * 1000.0, q * ratio * 1000.0

    # -- integration ----------------------------------------------------------------------
    def advance_to(self, t_s: float) -> None:
        target = int(t_s // 60)
        self._apply_due_jumps()
        while self.minute < target:
            end = min(target, self.minute + CHUNK_MIN)
            if self._jump_pos < len(self._jumps):
                end = min(end, max(self._jumps[self._jump_pos][0], self.minute + 1))
            self._integrate(self.minute, end)
            self._apply_due_jumps()

    def _apply_due_jumps(self) -> None:
        """Rewrite registers for rollback/replacement events starting at or before `minute`."""
        while self._jump_pos < len(self._jumps) and self._jumps[self._jump_pos][0] <= self.minute:
            i = self._jumps[self._jump_pos][1]
            self._jump_pos += 1
            ev = self.theft.events[i]
            regs = self.cust_rep[ev.customer]
            if ev.kind == "rollback":
                # set back by some weeks of the customer's typical consumption
                typical_wh = ev.params["days"] * self.params.base_kw[ev.customer] * 24_000.0
                delta = -min(regs[IMP], typical_wh)
                regs[IMP] += delta
                self.stolen_wh[i] -= delta  # the erased kWh are never billed
            else:  # replacement: the new meter starts from zero
                delta = -regs[IMP] + regs[EXP]
                regs[:] = 0.0
            self.jump_wh[i] += delta

    def _integrate(self, m0: int, m1: int) -> None:
        minutes = np.arange(m0, m1, dtype=np.int64)
        p, q, p_rep, q_rep = self.powers(minutes)
        flows = physics.solve(self.topo, p, q)
        self.cust_rep += _accumulate(p_rep, q_rep)
        self.cust_true += _accumulate(p, q)
        self.tx_reg += _accumulate(flows.p_tx_w, flows.q_tx_var)
        self.fd_reg += _accumulate(flows.p_fd_w, flows.q_fd_var)
        self.loss_wh += flows.loss_w.sum(0) / 60.0
        for i, ev in enumerate(self.theft.events):
            act = ev.active(minutes)
            if act.any():
                self.stolen_wh[i] += (p[act, ev.customer] - p_rep[act, ev.customer]).sum() / 60.0
        self.minute = m1

    # -- instantaneous state --------------------------------------------------------------
    def minute_state(self, t_s: float) -> MinuteState:
        """The electrical state during the minute containing t_s (integrating up to it)."""
        m = int(t_s // 60)
        if m < self.minute:
            # registers are integrated forward only; an old instant would silently mix times
            raise ValueError(
                f"t={t_s} is before the integrated minute {self.minute}: the simulation only "
                "moves forward; read instants in time order"
            )
        self.advance_to(t_s)
        if self._minute_state is None or self._minute_state.minute != m:
            mins = np.array([m], np.int64)
            p, q, p_rep, q_rep = self.powers(mins)
            self._minute_state = MinuteState(
                minute=m,
                flows=physics.solve(self.topo, p, q),
                p_rep_w=p_rep[0],
                q_rep_var=q_rep[0],
                freq_hz=float(physics.frequency_hz(self.grid.seed, mins)[0]),
                status=self.theft.status(m, len(self.grid.customers)),
            )
        return self._minute_state

    def registers_at(self, t_s: float) -> tuple[F64, F64, F64]:
        """(customer reported, transformer, feeder) registers at t_s, running minute included."""
        st = self.minute_state(t_s)
        frac = (t_s - st.minute * 60.0) / 60.0
        f = st.flows
        cust = self.cust_rep + frac * _accumulate(st.p_rep_w[None], st.q_rep_var[None])
        tx = self.tx_reg + frac * _accumulate(f.p_tx_w, f.q_tx_var)
        fd = self.fd_reg + frac * _accumulate(f.p_fd_w, f.q_fd_var)
        return cust, tx, fd
