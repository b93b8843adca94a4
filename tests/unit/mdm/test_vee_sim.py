"""The edge played by the simulator VEE evaluation (wattrail/evaluation/vee_sim.py): the
stale rule, an agent's cycles around a clock step, and the truth per interval."""

from __future__ import annotations

from collections import Counter

from firmware_sim.data_faults import DataFault, DataFaultPlan
from protocols.envelope import ClockStatus
from protocols.reading import Quality, Reading
from wattrail.evaluation import vee_sim
from wattrail.evaluation.vee_faults import Fault

STEP = vee_sim.STEP


def _setup(events: list[DataFault], n: int = 40) -> vee_sim.Setup:
    from firmware_sim.grid import generate_grid

    grid = generate_grid(seed=2, meters=2, feeders=1, transformers=1)
    gw = {c.meter_id: c.gateway_id for c in grid.customers}
    return vee_sim.Setup(2, grid, 0, n, gw, DataFaultPlan(events))


def test_stale_is_registers_repeating_while_the_meter_draws() -> None:
    a = Reading("M", 0, import_wh=5.0, export_wh=0.0, import_varh=1.0, export_varh=0.0, p_w=300.0)
    assert vee_sim.edge_stale(a, a)
    assert not vee_sim.edge_stale(None, a)
    idle = Reading("M", 0, import_wh=5.0, export_wh=0.0, import_varh=1.0, export_varh=0.0, p_w=0.0)
    assert not vee_sim.edge_stale(idle, idle)  # nothing drawn, nothing counted: honest
    moved = Reading("M", 0, import_wh=5.5, export_wh=0.0, import_varh=1.0, export_varh=0.0, p_w=300.0)
    assert not vee_sim.edge_stale(a, moved)
    assert not vee_sim.edge_stale(a, Reading("M", 0, quality=Quality.COMMS_LOST))


def test_a_clock_step_skips_labels_then_polls_some_twice() -> None:
    s = _setup([])
    mids = list(s.gateway_of)
    a, b, d = 10 * STEP + 100, 20 * STEP + 50, 1.5 * STEP
    s = _setup([DataFault("clock_step", m, a, b, {"offset_s": d}) for m in mids])
    agent = s.gateway_of[mids[0]]
    ts = vee_sim.ticks(s, agent)
    stamps = Counter(t.stamp_s // STEP for t in ts)
    # ahead by 1350 s from 9100 s: 9900 (label 11) is jumped over; put right at 18050 s,
    # the labels of [18050, 19400) come again: 18900 (label 21)
    assert [k for k in range(41) if k not in stamps] == [11]
    assert sorted(k for k, c in stamps.items() if c == 2) == [21]
    assert [t.true_s for t in ts] == sorted(t.true_s for t in ts)
    jumped = [t for t in ts if t.clock is ClockStatus.JUMPED]
    assert [(t.stamp_s // STEP, t.true_s == t.stamp_s) for t in jumped] == [(12, False), (21, True)]
    assert [t.true_s for t in ts if t.stamp_s == 12 * STEP] == [12 * STEP - d]
    truth = vee_sim.truth_intervals(s, mids)[0]
    assert [k for k in range(40) if truth[k] == Fault.CLOCK_SKIP] == [10, 11]
    assert [k for k in range(40) if truth[k] == Fault.CLOCK_DUP] == [20]
    assert [k for k in range(40) if truth[k] == Fault.CLOCK_SHIFT] == [*range(12, 20), 21]
    assert (truth[:10] == 0).all() and (truth[22:] == 0).all()


def test_truth_of_meter_faults_per_interval() -> None:
    s = _setup([])
    m = next(iter(s.gateway_of))
    s = _setup([DataFault("missing_day", m, 4 * STEP, 8 * STEP),
                DataFault("stuck", m, 12 * STEP, 16 * STEP, {"repeats": 3}),
                DataFault("spike", m, 30 * STEP + 5, 30 * STEP + 5, {"wh": 1.0})])
    truth = vee_sim.truth_intervals(s, list(s.gateway_of))
    row = truth[0].tolist()
    assert [k for k, f in enumerate(row) if f == Fault.MISSING_DAY] == [3, 4, 5, 6, 7]
    assert [k for k, f in enumerate(row) if f == Fault.STUCK_ZERO] == [12, 13, 14]
    assert [k for k, f in enumerate(row) if f == Fault.STUCK_CATCHUP] == [15]
    assert [k for k, f in enumerate(row) if f == Fault.SPIKE] == [30]
    assert not truth[1].any()  # the other meter is clean
