"""Serve a whole simulated grid over Modbus: the entry point `wattrail sim` calls.

One process, one asyncio loop: a TCP port per gateway (transformer gateways carry the balance
meter at unit 1 and customers at 2..247; each region's substation gateway carries its feeder
heads), optionally a TCP port per meter, and a ticker that integrates the physics in the
background so requests only ever pay for the current minute. Ground truth is rewritten every
`truth_every_s` real seconds and on shutdown.

    run(meters=2000, seed=1, speed=60.0, theft_rate=0.05, truth_out="truth.json",
        host="127.0.0.1", base_port=15020, status=lambda s: print(format_status(s)))

`grid_file`: loaded if it exists, else the generated grid is written there (so a second run,
and the cloud's topology import, see the same grid). Gateway i listens on base_port + i in
`Grid.gateways()` order (base_port=0: free ports); `endpoints_out` records the actual ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from firmware_sim import truth
from firmware_sim.clock import SimClock
from firmware_sim.datastore import Gateway, RegisterStore
from firmware_sim.faults import FaultPlan, plan_faults
from firmware_sim.grid import Grid, generate_grid
from firmware_sim.grid_file import load_grid, write_grid
from firmware_sim.meters import MeterReader
from firmware_sim.modbus_server import SimTcpServer, bound_port, start_tcp
from firmware_sim.simulation import IMP, Simulation
from firmware_sim.theft import plan_thefts

log = logging.getLogger(__name__)
DEFAULT_START_S = 1_767_225_600.0  # 2026-01-01T00:00:00Z: winter load, short PV days
THEFT_HORIZON_MIN = 30 * 1440  # scenarios start within the first 10 days of a 30-day plan


@dataclass(frozen=True)
class Status:
    sim_time_s: float
    meters: int
    ports: int
    requests: int
    requests_per_s: float
    encodes: int
    faults: dict[str, int]


@dataclass
class GridService:
    """A running simulator; `endpoints` says where each gateway listens."""

    grid: Grid
    sim: Simulation
    clock: SimClock
    store: RegisterStore
    servers: list[SimTcpServer] = field(default_factory=list)
    endpoints: list[dict[str, object]] = field(default_factory=list)

    async def stop(self) -> None:
        for srv in self.servers:
            await srv.shutdown()  # type: ignore[no-untyped-call]  # pymodbus: no annotations
        self.servers.clear()


def build_simulation(
    *,
    meters: int = 100,
    seed: int = 1,
    grid_file: str | Path | None = None,
    feeders: int | None = None,
    transformers: int | None = None,
    theft_rate: float = 0.0,
    replacement_rate: float = 0.0,
    start_s: float = DEFAULT_START_S,
) -> Simulation:
    """The grid (loaded or generated) with its theft plan, ready to advance."""
    if grid_file is not None and Path(grid_file).exists():
        grid = load_grid(grid_file)
    else:
        n_tx = transformers or max(1, -(-meters // 100))  # ~100 customers per transformer
        grid = generate_grid(seed, meters, feeders or max(1, min(n_tx, -(-n_tx // 5))), n_tx)
        if grid_file is not None:
            write_grid(grid, grid_file)
    cs = grid.customers
    plan = plan_thefts(
        grid.seed,
        [c.meter_id for c in cs],
        [c.pv_kwp > 0 for c in cs],
        [c.phases for c in cs],
        int(start_s // 60),
        THEFT_HORIZON_MIN,
        theft_rate,
        replacement_rate,
    )
    return Simulation(grid, start_s, plan)


async def start_service(
    sim: Simulation,
    clock: SimClock,
    *,
    host: str = "127.0.0.1",
    base_port: int = 0,
    meter_base_port: int | None = None,
    faults: FaultPlan | None = None,
) -> GridService:
    """Open the gateway ports (base_port + i, or free ports when base_port is 0) and, if
    `meter_base_port` is given, one port per meter from there on."""
    store = RegisterStore(MeterReader(sim), clock, faults)
    svc = GridService(sim.grid, sim, clock, store)
    gateways = [Gateway(g, dict(units)) for g, units in sim.grid.gateways().items()]
    ports = [0 if base_port == 0 else base_port + i for i in range(len(gateways))]
    if meter_base_port is not None:
        singles = [
            Gateway(f"PORT-{m}", {u: m}, any_unit=True) for gw in gateways for u, m in gw.units.items()
        ]
        gateways += singles
        ports += [0 if meter_base_port == 0 else meter_base_port + j for j in range(len(singles))]
    try:
        for gw, port in zip(gateways, ports, strict=True):
            srv = await start_tcp(store, gw, host, port)
            svc.servers.append(srv)
            svc.endpoints.append(
                {
                    "gateway_id": gw.gateway_id,
                    "host": host,
                    "port": bound_port(srv),
                    "per_meter": gw.any_unit,
                    "units": [{"unit_id": u, "meter_id": m} for u, m in gw.units.items()],
                }
            )
    except BaseException:
        await svc.stop()
        raise
    return svc


async def serve(
    *,
    meters: int = 100,
    seed: int = 1,
    grid_file: str | Path | None = None,
    speed: float = 60.0,
    theft_rate: float = 0.0,
    fault_rate: float = 0.0,
    fault_file: str | Path | None = None,
    truth_out: str | Path | None = None,
    endpoints_out: str | Path | None = None,
    host: str = "127.0.0.1",
    base_port: int = 15020,
    meter_base_port: int | None = None,
    start_s: float = DEFAULT_START_S,
    duration_s: float | None = None,
    truth_every_s: float = 10.0,
    status: Callable[[Status], None] | None = None,
) -> None:
    """Serve until cancelled (or for `duration_s` real seconds)."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # it logs every client hang-up
    sim = build_simulation(
        meters=meters, seed=seed, grid_file=grid_file, theft_rate=theft_rate, start_s=start_s
    )
    reg0 = {c.meter_id: float(sim.cust_rep[i, IMP]) for i, c in enumerate(sim.grid.customers)}
    if fault_file is not None:  # per-meter faults as written by FaultPlan.to_dict()
        faults = FaultPlan.from_dict(json.loads(Path(fault_file).read_text(encoding="utf-8")))
    else:
        faults = plan_faults(sim.grid.seed, list(reg0), fault_rate, reg0)
    clock = SimClock(start_s, speed)
    svc = await start_service(
        sim, clock, host=host, base_port=base_port, meter_base_port=meter_base_port, faults=faults
    )
    if endpoints_out is not None:
        Path(endpoints_out).write_text(
            json.dumps({"endpoints": svc.endpoints, "faults": faults.to_dict()}, indent=1) + "\n"
        )
    t_end = None if duration_s is None else time.monotonic() + duration_s
    last_truth = last_status = time.monotonic()
    last_requests = 0
    try:
        while t_end is None or time.monotonic() < t_end:
            await asyncio.sleep(0.25)
            # Keep requests cheap (only the running minute is left to compute). The store's
            # quantised time, not the raw clock: requests must never ask for an earlier minute.
            sim.advance_to(svc.store.now())
            now = time.monotonic()
            if truth_out is not None and now - last_truth >= truth_every_s:
                truth.write_truth(sim, truth_out, faults.data)
                last_truth = now
            if status is not None and now - last_status >= 1.0:
                st = svc.store.stats
                status(
                    Status(
                        clock.now(),
                        len(sim.grid.meter_models()),
                        len(svc.servers),
                        st.requests,
                        (st.requests - last_requests) / (now - last_status),
                        st.encodes,
                        dict(st.faults),
                    )
                )
                last_requests, last_status = st.requests, now
    finally:
        with contextlib.suppress(Exception):
            await svc.stop()
        if truth_out is not None:
            truth.write_truth(sim, truth_out, faults.data)


def run(
    *,
    meters: int = 2000,
    seed: int = 1,
    grid_file: str | Path | None = None,
    speed: float = 60.0,
    theft_rate: float = 0.05,
    fault_rate: float = 0.0,
    fault_file: str | Path | None = None,
    truth_out: str | Path | None = None,
    endpoints_out: str | Path | None = None,
    host: str = "127.0.0.1",
    base_port: int = 15020,
    meter_base_port: int | None = None,
    start_s: float = DEFAULT_START_S,
    duration_s: float | None = None,
    status: Callable[[Status], None] | None = None,
) -> None:
    """Blocking entry point for the CLI; Ctrl-C stops it after writing the ground truth."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                meters=meters,
                seed=seed,
                grid_file=grid_file,
                speed=speed,
                theft_rate=theft_rate,
                fault_rate=fault_rate,
                fault_file=fault_file,
                truth_out=truth_out,
                endpoints_out=endpoints_out,
                host=host,
                base_port=base_port,
                meter_base_port=meter_base_port,
                start_s=start_s,
                duration_s=duration_s,
                status=status,
            )
        )


def format_status(st: Status) -> str:
    """One progress line for a terminal."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(st.sim_time_s))
    faults = " ".join(f"{k}={v}" for k, v in sorted(st.faults.items())) or "none"
    return (
        f"sim {when}Z  meters {st.meters}  ports {st.ports}  "
        f"requests {st.requests} ({st.requests_per_s:.0f}/s)  faults {faults}"
    )
