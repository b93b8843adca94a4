"""What each simulated meter shows: `Reading`s built from the simulation state.

Three roles share one id space: customer meters (reported values, theft included), balance
meters on transformers and feeder-head meters (true flows). Values are what the meter's own
electronics would compute: a customer meter derives its currents from the power it registers
at the voltage it sees, so a bypassed meter shows ~0 A with full voltage, and a meter with a
reversed CT shows export. The one exception is the neutral tamper, where the phase element
still sees the true current and only the neutral element (the one that bills) is short.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from firmware_sim.physics import V_NOMINAL, neutral_current
from firmware_sim.simulation import EXP, EXP_VARH, IMP, IMP_VARH, Simulation
from protocols.reading import Reading

CUSTOMER, BALANCE, FEEDER = "customer", "balance", "feeder"


@dataclass(frozen=True, slots=True)
class MeterRef:
    role: str
    index: int
    model: str


def meter_index(sim: Simulation) -> dict[str, MeterRef]:
    g = sim.grid
    out = {c.meter_id: MeterRef(CUSTOMER, i, c.meter_model) for i, c in enumerate(g.customers)}
    out.update(
        {
            t.balance_meter_id: MeterRef(BALANCE, i, t.balance_meter_model)
            for i, t in enumerate(g.transformers)
        }
    )
    out.update({f.head_meter_id: MeterRef(FEEDER, i, f.head_meter_model) for i, f in enumerate(g.feeders)})
    return out


def _pf(p: float, q: float) -> float:
    s = float(np.hypot(p, q))
    return p / s if s > 1e-9 else 1.0  # an idle meter shows unity, as real ones do


class MeterReader:
    """Builds readings at a simulated instant; register arrays are computed once per instant."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.index = meter_index(sim)
        self._regs_t: float | None = None
        self._regs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def _registers(self, t_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._regs is None or self._regs_t != t_s:
            self._regs = self.sim.registers_at(t_s)
            self._regs_t = t_s
        return self._regs

    def reading(self, meter_id: str, t_s: float) -> Reading:
        ref = self.index[meter_id]
        if ref.role == CUSTOMER:
            return self._customer(meter_id, ref.index, t_s)
        if ref.role == BALANCE:
            return self._balance(meter_id, ref.index, t_s)
        return self._feeder(meter_id, ref.index, t_s)

    def _energy(self, regs: np.ndarray) -> dict[str, Any]:
        return {
            "import_wh": float(regs[IMP]),
            "export_wh": float(regs[EXP]),
            "import_varh": float(regs[IMP_VARH]),
            "export_varh": float(regs[EXP_VARH]),
        }

    def _customer(self, meter_id: str, i: int, t_s: float) -> Reading:
        sim = self.sim
        st = sim.minute_state(t_s)
        cust, _, _ = self._registers(t_s)
        v = st.flows.v_cust[0, i]
        p, q = float(st.p_rep_w[i]), float(st.q_rep_var[i])
        w = sim.topo.phase_w[i]
        i_rep = float(np.hypot(p, q)) * w / v
        i_phase = i_rep
        ev = sim.theft.active_kinds(st.minute).get(i)
        if ev is not None and ev.kind == "neutral":
            i_phase = st.flows.i_cust[0, i]  # the phase element is not fooled
        i_n = float(neutral_current(i_rep))
        c = sim.grid.customers[i]
        if c.phase is not None:
            k = c.phase  # single-phase meters have one voltage and one current input
            volts: dict[str, Any] = {"v_l1": float(v[k]), "i_l1": float(i_phase[k])}
        else:
            volts = {f"v_l{k + 1}": float(v[k]) for k in range(3)}
            volts.update({f"i_l{k + 1}": float(i_phase[k]) for k in range(3)})
        return Reading(
            meter_id,
            int(t_s * 1000),
            **self._energy(cust[i]),
            **volts,
            i_n=i_n,
            p_w=p,
            q_var=q,
            pf=_pf(p, q),
            freq_hz=st.freq_hz,
            status=int(st.status[i]),
        )

    def _balance(self, meter_id: str, k: int, t_s: float) -> Reading:
        st = self.sim.minute_state(t_s)
        _, tx, _ = self._registers(t_s)
        f = st.flows
        v, cur = f.v_tx[0, k], f.i_tx[0, k]
        p, q = float(f.p_tx_w[0, k]), float(f.q_tx_var[0, k])
        return Reading(
            meter_id,
            int(t_s * 1000),
            **self._energy(tx[k]),
            v_l1=float(v[0]),
            v_l2=float(v[1]),
            v_l3=float(v[2]),
            i_l1=float(cur[0]),
            i_l2=float(cur[1]),
            i_l3=float(cur[2]),
            i_n=float(neutral_current(cur)),
            p_w=p,
            q_var=q,
            pf=_pf(p, q),
            freq_hz=st.freq_hz,
        )

    def _feeder(self, meter_id: str, k: int, t_s: float) -> Reading:
        st = self.sim.minute_state(t_s)
        _, _, fd = self._registers(t_s)
        p, q = float(st.flows.p_fd_w[0, k]), float(st.flows.q_fd_var[0, k])
        # The head meter sits behind an 11 kV : 400 V voltage transformer and shows LV-equivalent
        # volts (primary values would leave the maps' 0-600 V plausibility range); power and
        # energy are primary values, so S = 3 V I still holds.
        v = V_NOMINAL
        amps = float(np.hypot(p, q)) / (3.0 * v)
        return Reading(
            meter_id,
            int(t_s * 1000),
            **self._energy(fd[k]),
            v_l1=v,
            v_l2=v,
            v_l3=v,
            i_l1=amps,
            i_l2=amps,
            i_l3=amps,
            i_n=0.0,
            p_w=p,
            q_var=q,
            pf=_pf(p, q),
            freq_hz=st.freq_hz,
        )
