"""The register datastore without sockets: words decode back to what the simulator holds."""

from __future__ import annotations

import asyncio

import pytest
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException

from firmware_sim.clock import SimClock
from firmware_sim.datastore import Gateway, GatewayContext, RegisterStore
from firmware_sim.meters import MeterReader
from firmware_sim.simulation import Simulation
from protocols.decode import decode_reading
from protocols.maps import get_map
from protocols.planner import plan_reads

from .conftest import START_S


@pytest.fixture
def store(small_grid):
    sim = Simulation(small_grid, START_S)
    return RegisterStore(MeterReader(sim), SimClock(START_S + 3600.0, manual=True))


def _decode(store, meter_id):
    m = get_map(store.reader.sim.grid.meter_models()[meter_id])
    plan = plan_reads(m)
    responses = [store.words(meter_id, r.function, r.start, r.count) for r in plan]
    return decode_reading(m, plan, responses, meter_id=meter_id, ts_ms=0).reading


def test_every_meter_decodes_to_the_simulated_values(store):
    t = store.clock.now()
    for meter_id in store.reader.sim.grid.meter_models():
        got = _decode(store, meter_id)
        want = store.reader.reading(meter_id, t)
        model = store.reader.sim.grid.meter_models()[meter_id]
        # resolution of each format (protocols/encode.py): float32 ~1e-7 relative,
        # EM24 0.1 kWh / 0.1 W / 1 mA, SunSpec int16 with scale factors
        e_tol = {"em24": 100.0, "sunspec203": 1.0}.get(model, 2.0)
        assert got.import_wh == pytest.approx(want.import_wh, abs=e_tol, rel=1e-6), meter_id
        assert got.p_w == pytest.approx(want.p_w, abs=1.0 if model != "sunspec203" else 10.0, rel=1e-3)
        assert got.v_l1 == pytest.approx(want.v_l1, abs=0.1)


def test_cache_holds_within_a_quantum_and_refreshes_after(store):
    meter = store.reader.sim.grid.customers[0].meter_id
    first = store.blocks(meter)
    assert store.blocks(meter) is first and store.stats.encodes == 1
    store.clock.step(30.0)
    assert store.blocks(meter) != first and store.stats.encodes == 2


def test_addresses_outside_the_map_and_writes_are_refused(store):
    meter = next(c.meter_id for c in store.reader.sim.grid.customers if c.meter_model == "sdm630")
    assert store.words(meter, 4, 0, 2) != ExcCodes.ILLEGAL_ADDRESS
    assert store.words(meter, 4, 5000, 2) == ExcCodes.ILLEGAL_ADDRESS
    assert store.words(meter, 4, 0, 0) == ExcCodes.ILLEGAL_ADDRESS
    assert store.words(meter, 3, 0, 2) == ExcCodes.ILLEGAL_FUNCTION  # SDM630: input regs only
    assert store.words(meter, 16, 0, 2) == ExcCodes.ILLEGAL_FUNCTION


def test_gateway_context_routes_unit_ids(store, small_grid):
    gw_id, units = next(iter(small_grid.gateways().items()))
    ctx = GatewayContext(store, Gateway(gw_id, dict(units)))
    assert sorted(ctx.device_ids()) == sorted(u for u, _ in units)
    words = asyncio.run(ctx.async_getValues(1, 4, 0, 2))
    assert isinstance(words, list) and len(words) == 2
    with pytest.raises(NoSuchIdException):
        asyncio.run(ctx.async_getValues(250, 4, 0, 2))
    single = GatewayContext(store, Gateway("one", {units[1][0]: units[1][1]}, any_unit=True))
    assert asyncio.run(single.async_getValues(77, 4, 0, 2)) == asyncio.run(
        ctx.async_getValues(units[1][0], 4, 0, 2)
    )
