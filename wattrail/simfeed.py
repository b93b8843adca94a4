"""Sample an in-memory `firmware_sim.Simulation` into a `Feed`, for evaluation without a database.

What a meter would report at each instant, computed for all meters at once from the
simulation's arrays (the same rules as `firmware_sim.meters.MeterReader`, which builds one
`Reading` object per meter and instant: ~100x too slow for 2,000 meters x a week). A
`FaultPlan` adds what the wire does: polls that time out, drop or fail are missing readings,
and counters wrap at the meter's `rollover_wh`. Clock drift is not applied (readings are put
on the poll instant, as the edge agent does).

Layering: this module joins `firmware_sim` to `cloud.analytics`, so it lives in `wattrail/`; it is
used only by `evaluate` and the tests, and belongs in `firmware_sim` (see docs/analytics.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cloud.analytics.pipeline.feed import PER_METER, Feed, Topology, empty_arrays
from firmware_sim.faults import Action, FaultPlan
from firmware_sim.grid import CUSTOMER_KINDS
from firmware_sim.physics import neutral_current
from firmware_sim.simulation import EXP, EXP_VARH, IMP, IMP_VARH, Simulation

_MISSING = (Action.TIMEOUT, Action.DROP, Action.EXCEPTION, Action.CORRUPT)


def topology_of(sim: Simulation) -> Topology:
    g = sim.grid
    tx_ids = [t.transformer_id for t in g.transformers]
    fd_ids = [f.feeder_id for f in g.feeders]
    rg_ids = [r.region_id for r in g.regions]
    return Topology(
        meter_ids=[c.meter_id for c in g.customers],
        transformer_ids=tx_ids,
        feeder_ids=fd_ids,
        region_ids=rg_ids,
        tx_of=np.array([tx_ids.index(c.transformer_id) for c in g.customers], np.int64),
        feeder_of_tx=np.array([fd_ids.index(t.feeder_id) for t in g.transformers], np.int64),
        region_of_feeder=np.array([rg_ids.index(f.region_id) for f in g.feeders], np.int64),
        cls=np.array([CUSTOMER_KINDS.index(c.kind) for c in g.customers], np.int64),
        phases=np.array([c.phases for c in g.customers], np.int64),
        has_pv=np.array([c.pv_kwp > 0 for c in g.customers], np.bool_),
        tariff_per_kwh=np.array([c.tariff_per_kwh for c in g.customers]),
        rating_va=np.array([t.rating_kva * 1000.0 for t in g.transformers]),
        no_load_w=np.array([t.no_load_loss_w for t in g.transformers]),
        load_loss_w=np.array([t.load_loss_w for t in g.transformers]),
    )


def _put_regs(arr: Any, k: int, regs: np.ndarray) -> None:
    arr.import_wh[:, k], arr.export_wh[:, k] = regs[:, IMP], regs[:, EXP]
    arr.import_varh[:, k], arr.export_varh[:, k] = regs[:, IMP_VARH], regs[:, EXP_VARH]


def sample(sim: Simulation, step_s: int, n_instants: int, faults: FaultPlan | None = None) -> Feed:
    """Advance `sim` from its current minute over `n_instants` instants `step_s` apart."""
    topo = topology_of(sim)
    g = sim.grid
    n, x, f = len(g.customers), len(g.transformers), len(g.feeders)
    t0 = int(sim.minute * 60)
    cust, bal, fdr = empty_arrays(n, n_instants), empty_arrays(x, n_instants), empty_arrays(f, n_instants)
    single = np.array([c.phase if c.phase is not None else -1 for c in g.customers])
    one = np.flatnonzero(single >= 0)
    three = np.flatnonzero(single < 0)
    wrap = np.zeros(n)
    faulty: list[tuple[int, str]] = []
    if faults is not None:
        for idx, c in enumerate(g.customers):
            mf = faults.get(c.meter_id)
            if mf is not None:
                faulty.append((idx, c.meter_id))
                wrap[idx] = mf.rollover_wh or 0.0
    cust.modulus_wh = wrap
    for k in range(n_instants):
        ts = t0 + k * step_s
        st = sim.minute_state(ts)
        c_reg, t_reg, f_reg = sim.registers_at(ts)
        c_reg = c_reg.copy()
        wrapped = wrap > 0
        c_reg[wrapped] = c_reg[wrapped] % wrap[wrapped, None]
        _put_regs(cust, k, c_reg)
        _put_regs(bal, k, t_reg)
        _put_regs(fdr, k, f_reg)
        fl = st.flows
        v = fl.v_cust[0]
        p, q = st.p_rep_w, st.q_rep_var
        i_rep = np.hypot(p, q)[:, None] * sim.topo.phase_w / v
        i_phase = i_rep.copy()
        for c_idx, ev in sim.theft.active_kinds(st.minute).items():
            if ev.kind == "neutral":
                i_phase[c_idx] = fl.i_cust[0, c_idx]  # the phase element is not fooled
        cust.v[three, k], cust.i[three, k] = v[three], i_phase[three]
        cust.v[one, k, 0] = v[one, single[one]]
        cust.i[one, k, 0] = i_phase[one, single[one]]
        cust.i_n[:, k] = neutral_current(i_rep)
        cust.p_w[:, k], cust.q_var[:, k] = p, q
        cust.status[:, k] = st.status
        cust.present[:, k] = True
        cust.polled[:, k] = bal.polled[:, k] = fdr.polled[:, k] = True  # every meter is asked
        for c_idx, mid in faulty:
            if faults is not None and faults.decide(mid)[0] in _MISSING:
                cust.present[c_idx, k] = False
        bal.v[:, k], bal.i[:, k] = fl.v_tx[0], fl.i_tx[0]
        bal.p_w[:, k], bal.q_var[:, k] = fl.p_tx_w[0], fl.q_tx_var[0]
        bal.present[:, k] = True
        fdr.p_w[:, k], fdr.q_var[:, k] = fl.p_fd_w[0], fl.q_fd_var[0]
        fdr.v[:, k] = 230.0
        fdr.present[:, k] = True
    blank_missing(cust)
    return Feed(t0, step_s, cust, bal, fdr, topo)


def blank_missing(a: Any) -> None:
    """Missing is missing: a poll that failed has no values at all."""
    gone = ~a.present
    for name in PER_METER:
        getattr(a, name)[gone] = np.nan
    a.v[gone] = np.nan
    a.i[gone] = np.nan
    a.status[gone] = 0
