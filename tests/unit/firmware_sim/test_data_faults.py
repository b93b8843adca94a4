"""Meter data faults (firmware_sim/data_faults.py): off changes nothing, on does what the
truth says, and the plan is placed as documented."""

from __future__ import annotations

import hashlib
import json
from dataclasses import astuple
from datetime import UTC, datetime

import pytest

from firmware_sim.data_faults import (
    DataFault,
    DataFaultPlan,
    DataFaultRates,
    local_days,
    plan_data_faults,
)
from firmware_sim.faults import Action, FaultPlan, plan_faults
from firmware_sim.grid import generate_grid
from firmware_sim.meters import MeterReader
from firmware_sim.simulation import IMP, Simulation
from firmware_sim.truth import build_truth

T0 = 1_772_323_200.0  # 2026-03-01T00:00Z
STEP = 900
# sha256 of the run below, computed with the simulator as it was before data faults existed
# (git HEAD 8d0690a): decisions, faulted readings and the truth file of 12 meters, 200 polls
GOLDEN = "8f81370f6205d270876578a5fdc7d35dc351b6c58c836f8f96a0ca59ee5ccaf5"


def _short_run(plan_data: DataFaultPlan | None) -> str:
    grid = generate_grid(seed=5, meters=12, feeders=1, transformers=2)
    sim = Simulation(grid, T0)
    reader = MeterReader(sim)
    reg0 = {c.meter_id: float(sim.cust_rep[i, IMP]) for i, c in enumerate(grid.customers)}
    plan = plan_faults(5, list(reg0), 0.5, reg0)
    plan.data = plan_data
    h = hashlib.sha256(json.dumps(plan.to_dict(), sort_keys=True).encode())
    for k in range(200):
        t = T0 + k * STEP
        for m in reader.index:
            h.update(repr(plan.decide(m, t)[0].value).encode())  # the new call, with a time
            h.update(repr(astuple(plan.apply_reading(reader.reading(m, t), T0))).encode())
    h.update(json.dumps(build_truth(sim, plan_data), sort_keys=True).encode())
    return h.hexdigest()


def test_off_the_simulator_is_byte_identical_to_before() -> None:
    assert _short_run(None) == GOLDEN


def test_an_empty_plan_changes_readings_only_by_its_truth_key() -> None:
    # an empty plan: no reading or decision changes, the truth file gains an empty list
    assert _short_run(DataFaultPlan([])) != GOLDEN  # the "data" keys are there
    grid = generate_grid(seed=5, meters=4, feeders=1, transformers=1)
    truth = build_truth(Simulation(grid, T0), DataFaultPlan([]))
    assert truth["data_faults"] == []
    assert "data_faults" not in build_truth(Simulation(grid, T0))
    assert "data" not in FaultPlan(1).to_dict()


def _readings(events: list[DataFault], k_max: int = 60) -> tuple[list, list, FaultPlan]:
    grid = generate_grid(seed=9, meters=3, feeders=1, transformers=1)
    sim, honest_sim = Simulation(grid, T0), Simulation(grid, T0)
    plan = FaultPlan(9, {}, DataFaultPlan(events))
    r, h = MeterReader(sim), MeterReader(honest_sim)
    mid = grid.customers[0].meter_id
    faulty, honest = [], []
    for k in range(k_max):
        t = T0 + k * STEP
        faulty.append((plan.decide(mid, t)[0], plan.apply_reading(r.reading(mid, t), T0)))
        honest.append(h.reading(mid, t))
    return faulty, honest, plan


def test_a_stuck_register_repeats_then_catches_up() -> None:
    mid = generate_grid(seed=9, meters=3, feeders=1, transformers=1).customers[0].meter_id
    start = T0 + 10 * STEP
    faulty, honest, _ = _readings([DataFault("stuck", mid, start, start + 5 * STEP, {"repeats": 4})])
    regs = [(f.import_wh, f.export_wh, f.import_varh, f.export_varh) for _, f in faulty]
    assert all(regs[k] == regs[10] for k in range(11, 15))  # four repeated reads
    assert regs[9] != regs[10] and regs[15] != regs[14]
    assert faulty[15][1].import_wh == honest[15].import_wh  # caught up: nothing was lost
    assert faulty[12][1].p_w == honest[12].p_w != 0  # the meter still reports its power
    assert [f for f, _ in faulty] == [Action.REPLY] * len(faulty)


def test_a_spike_adds_energy_once_and_the_register_keeps_it() -> None:
    mid = generate_grid(seed=9, meters=3, feeders=1, transformers=1).customers[0].meter_id
    at = T0 + 20 * STEP + 300
    faulty, honest, _ = _readings([DataFault("spike", mid, at, at, {"wh": 5000.0})])
    extra = [f.import_wh - h.import_wh for (_, f), h in zip(faulty, honest, strict=True)]
    assert extra[:21] == [0.0] * 21 and all(e == pytest.approx(5000.0) for e in extra[21:])
    assert faulty[30][1].export_wh == honest[30].export_wh


def test_a_missing_day_silences_the_meter_for_exactly_that_day() -> None:
    mid = generate_grid(seed=9, meters=3, feeders=1, transformers=1).customers[0].meter_id
    a, b = T0 + 8 * STEP, T0 + 40 * STEP
    faulty, _, plan = _readings([DataFault("missing_day", mid, a, b)])
    silent = [k for k, (act, _) in enumerate(faulty) if act is Action.TIMEOUT]
    assert silent == list(range(8, 40))
    assert plan.decide("someone-else", a + 1)[0] is Action.REPLY


def test_the_truth_file_lists_what_was_injected() -> None:
    grid = generate_grid(seed=9, meters=3, feeders=1, transformers=1)
    sim = Simulation(grid, T0)
    mid = grid.customers[1].meter_id
    evs = [DataFault("spike", mid, T0 + 1000, T0 + 1000, {"wh": 1.5}),
           DataFault("stuck", mid, T0 + 9000, T0 + 90_000, {"repeats": 2})]
    sim.advance_to(T0 + 3600)
    out = build_truth(sim, DataFaultPlan(evs))["data_faults"]
    assert out == [{"meter_id": mid, "kind": "spike", "start": "2026-03-01T00:16:40Z",
                    "end": "2026-03-01T00:16:40Z", "start_ms": int((T0 + 1000) * 1000),
                    "end_ms": int((T0 + 1000) * 1000), "params": {"wh": 1.5}}]  # stuck: later
    back = FaultPlan.from_dict(FaultPlan(3, {}, DataFaultPlan(evs)).to_dict())
    assert back.data is not None and back.data.events == evs


def test_local_days_know_the_23_hour_day() -> None:
    start = datetime(2026, 2, 28, 23, tzinfo=UTC).timestamp()
    days = local_days(start, start + 31 * 86400, "Europe/Berlin")
    assert len(days) == 31
    assert sorted({int(b - a) // 3600 for a, b in days}) == [23, 24]


def test_the_plan_is_deterministic_and_placed_as_documented() -> None:
    grid = generate_grid(seed=4, meters=16, feeders=1, transformers=2)
    gw = {c.meter_id: c.gateway_id for c in grid.customers}
    start = datetime(2026, 2, 28, 23, tzinfo=UTC).timestamp()
    end = start + 31 * 86400 - 3600
    a = plan_data_faults(4, gw, start, end, tz="Europe/Berlin")
    assert a.to_dict() == plan_data_faults(4, gw, start, end, tz="Europe/Berlin").to_dict()
    assert a.to_dict() != plan_data_faults(5, gw, start, end, tz="Europe/Berlin").to_dict()
    days = local_days(start, end, "Europe/Berlin")

    def day_of(t: float) -> int:
        return next(i for i, (lo, hi) in enumerate(days) if lo <= t < hi)

    kinds = [e.kind for e in a.events]
    assert kinds.count("clock_step") == 16  # one per meter of each gateway
    assert kinds.count("missing_day") == round(0.75 * 16)
    for mid in gw:
        mine = [e for e in a.events if e.meter_id == mid]
        clock = next(e for e in mine if e.kind == "clock_step")
        near = set(range(day_of(clock.start_s) - 1, day_of(clock.end_s) + 2))
        own = [day_of(e.start_s) for e in mine if e.kind != "clock_step"]
        assert len(own) == len(set(own)) and not set(own) & near
        assert all(0 < d < len(days) - 1 for d in own)
        for e in mine:
            if e.kind == "stuck":
                assert (e.start_s - start) % STEP == 0 and e.end_s - e.start_s == (
                    e.params["repeats"] + 1) * STEP
            if e.kind == "missing_day":
                d = day_of(e.start_s)
                assert (e.start_s, e.end_s) == days[d]
                assert not {d - 1, d + 1} & set(own)
    none = plan_data_faults(4, gw, start, end, rates=DataFaultRates(share=0.0, clock_steps=0))
    assert none.events == []
    with pytest.raises(ValueError, match="fraction"):
        plan_data_faults(4, gw, start, end, rates=DataFaultRates(share=2.0))
    with pytest.raises(ValueError, match="unknown data fault"):
        DataFault("gremlin", "M", 0.0, 1.0)
