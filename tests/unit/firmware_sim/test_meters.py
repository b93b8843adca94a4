"""What meters show: V, I, PF consistent with P; voltage drop; tamper evidence in readings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from firmware_sim.meters import MeterReader
from firmware_sim.simulation import Simulation
from firmware_sim.theft import TheftEvent, TheftPlan
from protocols.reading import MeterStatus

from .conftest import START_S

EVENING = START_S + 5 * 86_400 + 18 * 3600 + 1800 + 17.5  # a Tuesday, 19:30 local, mid-minute


def _customer(grid, pred):
    return next(i for i, c in enumerate(grid.customers) if pred(c))


def _reader(grid, events=()):
    return MeterReader(Simulation(grid, START_S, TheftPlan(grid.seed, list(events))))


def test_single_and_three_phase_readings_are_consistent(small_grid):
    r = _reader(small_grid)
    for c in small_grid.customers:
        rd = r.reading(c.meter_id, EVENING)
        s = math.hypot(rd.p_w, rd.q_var)
        if c.phases == 1:
            assert rd.v_l2 is None and rd.i_l2 is None
            assert rd.v_l1 * rd.i_l1 == pytest.approx(s, rel=1e-9)
            assert rd.i_n == pytest.approx(rd.i_l1)  # the load's current comes back on N
        else:
            va = rd.v_l1 * rd.i_l1 + rd.v_l2 * rd.i_l2 + rd.v_l3 * rd.i_l3
            assert va == pytest.approx(s, rel=1e-9)
            assert rd.i_n < max(rd.i_l1, rd.i_l2, rd.i_l3)
        assert rd.pf == pytest.approx(rd.p_w / s if s else 1.0)
        assert 49.9 <= rd.freq_hz <= 50.1
        assert rd.ts_ms == int(EVENING * 1000)


def test_voltage_falls_with_load_and_distance(small_grid):
    sim = Simulation(small_grid, START_S)
    night = sim.minute_state(START_S + 5 * 86_400 + 3 * 3600).flows.v_tx[0].copy()
    peak = sim.minute_state(EVENING).flows.v_tx[0]
    assert np.all(peak.mean(1) < night.mean(1))  # every transformer sags at the evening peak
    rural = np.array(
        [
            next(f.rural for f in small_grid.feeders if f.feeder_id == t.feeder_id) and t.distance_km > 8.0
            for t in small_grid.transformers
        ]
    )
    assert rural.any() and (~rural).any()
    assert peak[rural].mean() < peak[~rural].mean()  # the long rural feeder's far end is lowest


def test_reading_the_past_is_refused(small_grid):
    r = _reader(small_grid)
    mid = small_grid.customers[0].meter_id
    r.reading(mid, START_S + 7200.0)
    with pytest.raises(ValueError, match="only moves forward"):
        r.reading(mid, START_S + 60.0)


def test_registers_only_grow_without_theft(small_grid):
    r = _reader(small_grid)
    ids = [c.meter_id for c in small_grid.customers]
    prev = [r.reading(m, START_S) for m in ids]
    for t in (START_S + 59.0, START_S + 3600.5, START_S + 86_400.0):
        now = [r.reading(m, t) for m in ids]
        for a, b in zip(prev, now, strict=True):
            assert b.import_wh >= a.import_wh and b.export_wh >= a.export_wh
        prev = now


def test_pv_customer_exports_at_noon(small_grid):
    i = _customer(small_grid, lambda c: c.pv_kwp > 4 and c.kind == "residential")
    r = _reader(small_grid)
    mid = small_grid.customers[i].meter_id
    noon = START_S + 12 * 86_400 + 11 * 3600  # 12:00 local on a January day
    before = r.reading(mid, noon - 3600)
    after = r.reading(mid, noon + 3600)
    night = r.reading(mid, noon + 12 * 3600)
    assert after.export_wh > before.export_wh
    assert night.p_w > 0 and after.p_w < 0  # imports at midnight, exports at 13:00


def _during(grid, kind, i, **params):
    m0 = int(EVENING // 60) - 60
    return TheftEvent(i, grid.customers[i].meter_id, kind, m0, m0 + 240, params)


def test_bypass_reads_zero_with_voltage_present(small_grid):
    i = _customer(small_grid, lambda c: c.phases == 1 and c.pv_kwp == 0)
    rd = _reader(small_grid, [_during(small_grid, "bypass", i)]).reading(
        small_grid.customers[i].meter_id, EVENING
    )
    honest = _reader(small_grid).reading(small_grid.customers[i].meter_id, EVENING)
    assert rd.p_w == 0.0 and rd.i_l1 == 0.0
    assert rd.v_l1 > 200.0 and honest.p_w > 0
    assert rd.import_wh < honest.import_wh


def test_neutral_tamper_splits_phase_and_neutral_current(small_grid):
    i = _customer(small_grid, lambda c: c.phases == 1 and c.pv_kwp == 0)
    mid = small_grid.customers[i].meter_id
    rd = _reader(small_grid, [_during(small_grid, "neutral", i, a=0.4)]).reading(mid, EVENING)
    honest = _reader(small_grid).reading(mid, EVENING)
    assert rd.i_l1 == pytest.approx(honest.i_l1)  # the phase element sees it all
    assert rd.i_n == pytest.approx(0.4 * honest.i_l1)  # the neutral element bills 40 %
    assert rd.p_w == pytest.approx(0.4 * honest.p_w)


def test_reversed_ct_shows_export_on_a_non_pv_customer(small_grid):
    i = _customer(small_grid, lambda c: c.phases == 1 and c.pv_kwp == 0)
    mid = small_grid.customers[i].meter_id
    r = _reader(small_grid, [_during(small_grid, "reversed_ct", i, share=1.0)])
    start = r.reading(mid, EVENING - 3000)
    rd = r.reading(mid, EVENING)
    assert rd.p_w < 0 and rd.pf < 0
    assert rd.export_wh > start.export_wh
    assert rd.status & MeterStatus.REVERSE_CURRENT


@pytest.mark.parametrize(
    ("kind", "flag"),
    [("magnetic", MeterStatus.MAGNETIC_FIELD), ("cover_open", MeterStatus.COVER_OPEN)],
)
def test_tamper_flags(small_grid, kind, flag):
    i = _customer(small_grid, lambda c: c.pv_kwp == 0)
    mid = small_grid.customers[i].meter_id
    r = _reader(small_grid, [_during(small_grid, kind, i, a=0.5)])
    assert r.reading(mid, EVENING).status & flag
    assert not r.reading(mid, EVENING + 4 * 3600).status & flag  # cleared after the event


def test_rollback_and_replacement_rewrite_the_register(small_grid):
    i, j = [k for k, c in enumerate(small_grid.customers) if c.pv_kwp == 0][:2]
    evs = [_during(small_grid, "rollback", i, days=30.0), _during(small_grid, "replacement", j)]
    r = _reader(small_grid, evs)
    at = evs[0].start_min * 60.0
    before = [r.reading(small_grid.customers[k].meter_id, at - 1).import_wh for k in (i, j)]
    after = [r.reading(small_grid.customers[k].meter_id, at + 1) for k in (i, j)]
    expected_cut = 30.0 * small_grid.customers[i].base_kw * 24_000.0
    assert before[0] - after[0].import_wh == pytest.approx(expected_cut, rel=0.01)
    assert after[1].import_wh < 100.0  # a new meter counts from zero
    assert after[1].status & MeterStatus.METER_REPLACED
    assert r.sim.stolen_wh[0] == pytest.approx(expected_cut, rel=0.01)
