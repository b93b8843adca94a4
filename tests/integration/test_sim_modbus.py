"""Simulated meters over real Modbus: a pymodbus client reads SDM630, EM24 and SunSpec meters
over TCP (gateway and one-port-per-meter) and over RTU on a socat pty pair, and the protocols
decoder turns the words into the values the simulator holds. Faults are seen on the wire."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from firmware_sim.clock import SimClock
from firmware_sim.datastore import Gateway
from firmware_sim.faults import FaultPlan, MeterFaults
from firmware_sim.grid import Grid, generate_grid
from firmware_sim.grid_service import GridService, start_service
from firmware_sim.modbus_server import start_rtu
from firmware_sim.rtu import open_pty_pair
from firmware_sim.simulation import Simulation
from protocols.decode import decode_reading
from protocols.maps import get_map
from protocols.planner import plan_reads
from protocols.reading import Reading

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]
START_S = 1_767_225_600 + 2 * 86_400 + 12 * 3600  # a sunny-ish January midday: PV is exporting
TOL = {"sdm630": 1e-6, "sdm120": 1e-6, "em24": 1e-3, "sunspec203": 1e-2}  # format resolution


@pytest.fixture(scope="module")
def grid() -> Grid:
    g = generate_grid(seed=21, meters=240, feeders=2, transformers=2)
    models = {c.meter_model for c in g.customers}
    assert {"sdm630", "em24", "sunspec203"} <= models, "the test grid lacks a meter model"
    return g


def _pick(grid: Grid, model: str) -> tuple[str, int, str]:
    """(meter id, unit id, gateway id) of the first customer meter of `model`."""
    c = next(c for c in grid.customers if c.meter_model == model)
    return c.meter_id, c.unit_id, c.gateway_id


@contextlib.asynccontextmanager
async def _service(grid: Grid, **kw: object) -> AsyncIterator[GridService]:
    sim = Simulation(grid, START_S)
    svc = await start_service(sim, SimClock(START_S, manual=True), host="127.0.0.1", **kw)  # type: ignore[arg-type]
    try:
        yield svc
    finally:
        await svc.stop()


def _port(svc: GridService, gateway_id: str) -> int:
    return next(int(e["port"]) for e in svc.endpoints if e["gateway_id"] == gateway_id)  # type: ignore[call-overload]


async def _read_meter(
    client: AsyncModbusTcpClient | AsyncModbusSerialClient, model: str, unit: int, meter_id: str
) -> Reading:
    m = get_map(model)
    plan = plan_reads(m)
    responses = []
    for r in plan:
        fn = client.read_input_registers if r.function == 4 else client.read_holding_registers
        rr = await fn(r.start, count=r.count, device_id=unit)
        assert not rr.isError(), rr
        responses.append(rr.registers)
    return decode_reading(m, plan, responses, meter_id=meter_id, ts_ms=0).reading


def _assert_same(got: Reading, want: Reading, model: str) -> None:
    rel = TOL[model]
    for name in ("import_wh", "export_wh", "v_l1", "i_l1", "p_w", "freq_hz"):
        w, g = getattr(want, name), getattr(got, name)
        if model == "sunspec203" and name.endswith("_wh") and w == 0:
            assert g is None  # SunSpec acc32 0 is "not implemented" (protocols docs)
            continue
        # absolute floor = the format's step (EM24 energy 100 Wh, SunSpec scale factors)
        assert g == pytest.approx(w, rel=rel, abs=100.0 if name.endswith("wh") else 0.05), name


async def test_tcp_gateway_serves_sdm630_em24_and_sunspec(grid: Grid) -> None:
    async with _service(grid, base_port=0) as svc:
        t = svc.clock.now()
        bal = grid.transformers[0]
        targets = [
            (bal.balance_meter_id, 1, bal.gateway_id, "sdm630"),
            (*_pick(grid, "em24"), "em24"),
            (*_pick(grid, "sunspec203"), "sunspec203"),
            (*_pick(grid, "sdm120"), "sdm120"),
            (
                grid.feeders[0].head_meter_id,
                grid.feeders[0].head_unit_id,
                grid.regions[0].substation_gateway_id,
                "em24",
            ),
        ]
        for meter_id, unit, gw, model in targets:
            client = AsyncModbusTcpClient("127.0.0.1", port=_port(svc, gw), timeout=2, retries=0)
            assert await client.connect()
            try:
                got = await _read_meter(client, model, unit, meter_id)
            finally:
                client.close()
            _assert_same(got, svc.store.reader.reading(meter_id, t), model)
        # and the registers follow simulated time
        meter_id, unit, gw, model = targets[0]
        before = svc.store.reader.reading(meter_id, t)
        svc.clock.step(3600.0)
        client = AsyncModbusTcpClient("127.0.0.1", port=_port(svc, gw), timeout=2, retries=0)
        await client.connect()
        later = await _read_meter(client, model, unit, meter_id)
        client.close()
        assert later.import_wh > before.import_wh + 10_000.0  # a transformer draws > 10 kWh/h
        _assert_same(later, svc.store.reader.reading(meter_id, t + 3600.0), model)


async def test_one_port_per_meter_answers_any_unit_id(grid: Grid) -> None:
    (
        meter_id,
        _,
        _,
    ) = _pick(grid, "sunspec203")
    async with _service(grid, base_port=0, meter_base_port=0) as svc:
        port = _port(svc, f"PORT-{meter_id}")
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        assert await client.connect()
        got = await _read_meter(client, "sunspec203", 99, meter_id)
        client.close()
        _assert_same(got, svc.store.reader.reading(meter_id, svc.clock.now()), "sunspec203")


async def test_rtu_line_over_a_socat_pty_pair(grid: Grid) -> None:
    line = {
        1: grid.transformers[0].balance_meter_id,
        2: _pick(grid, "em24")[0],
        3: _pick(grid, "sunspec203")[0],
    }
    models = grid.meter_models()
    async with _service(grid, base_port=0) as svc:
        with open_pty_pair() as pair:
            server = await start_rtu(svc.store, Gateway("RS485-1", line), pair.server_port)
            client = AsyncModbusSerialClient(pair.client_port, baudrate=19200, timeout=2, retries=0)
            try:
                assert await client.connect()
                for unit, meter_id in line.items():
                    got = await _read_meter(client, models[meter_id], unit, meter_id)
                    want = svc.store.reader.reading(meter_id, svc.clock.now())
                    _assert_same(got, want, models[meter_id])
                # nobody answers for an absent unit on a serial line
                with pytest.raises(ModbusIOException):
                    await client.read_input_registers(0, count=2, device_id=9)
            finally:
                client.close()
                await server.shutdown()


def _faulty(grid: Grid, meter_id: str, **kw: float) -> FaultPlan:
    return FaultPlan(grid.seed, {meter_id: MeterFaults(**kw)})  # type: ignore[arg-type]


async def test_faults_on_tcp(grid: Grid) -> None:
    bal = grid.transformers[0]
    cases = {
        "exception": _faulty(grid, bal.balance_meter_id, exception_prob=1.0, exception_code=4),
        "corrupt": _faulty(grid, bal.balance_meter_id, corrupt_prob=1.0),
        "timeout": _faulty(grid, bal.balance_meter_id, timeout_prob=1.0),
        "drop": _faulty(grid, bal.balance_meter_id, drop_prob=1.0),
    }
    for name, plan in cases.items():
        async with _service(grid, base_port=0, faults=plan) as svc:
            client = AsyncModbusTcpClient(
                "127.0.0.1", port=_port(svc, bal.gateway_id), timeout=0.5, retries=0
            )
            assert await client.connect()
            try:
                if name in ("exception", "corrupt"):
                    rr = await client.read_input_registers(0, count=2, device_id=1)
                    assert rr.isError()
                    assert rr.exception_code == (4 if name == "exception" else 0x0B)
                else:
                    with pytest.raises((ModbusIOException, ConnectionException)):
                        await client.read_input_registers(0, count=2, device_id=1)
                # a healthy meter on the same gateway still answers (except after a drop)
                if name != "drop":
                    rr = await client.read_input_registers(0, count=2, device_id=2)
                    assert not rr.isError()
                assert svc.store.stats.faults[name] >= 1
            finally:
                client.close()
        # unknown unit ids get the gateway's "target did not respond"
    async with _service(grid, base_port=0) as svc:
        client = AsyncModbusTcpClient("127.0.0.1", port=_port(svc, bal.gateway_id), timeout=1, retries=0)
        await client.connect()
        rr = await client.read_input_registers(0, count=2, device_id=247)
        client.close()
        assert rr.isError() and rr.exception_code == 0x0B


async def test_corrupt_rtu_frame_is_rejected_then_line_recovers(grid: Grid) -> None:
    bal = grid.transformers[0].balance_meter_id
    plan = FaultPlan(
        grid.seed,
        {
            bal: MeterFaults(corrupt_prob=1.0),
        },
    )
    async with _service(grid, base_port=0, faults=plan) as svc:
        with open_pty_pair() as pair:
            line = {1: bal, 2: grid.transformers[1].balance_meter_id}
            server = await start_rtu(svc.store, Gateway("RS485-2", line), pair.server_port)
            client = AsyncModbusSerialClient(pair.client_port, baudrate=19200, timeout=0.5, retries=0)
            try:
                assert await client.connect()
                with pytest.raises(ModbusIOException):
                    await client.read_input_registers(0, count=2, device_id=1)
                assert svc.store.stats.faults["corrupt"] == 1
                await asyncio.sleep(0.1)
                rr = await client.read_input_registers(0, count=2, device_id=2)
                assert not rr.isError()
            finally:
                client.close()
                await server.shutdown()
