"""SDM630 meter reads per second one edge-agent process sustains over Modbus TCP.

The simulator (firmware_sim, every meter on its own TCP port) runs in a child process; this
process runs the real `edge.poller.Poller` over `--connections` SDM630 meters, one link (TCP
connection) each, calling `poll_all()` back to back (no tick wait) for `--seconds`. A *meter
read* is one meter's whole plan (3 Modbus requests for SDM630 with the default max_gap 8;
2 with --max-gap 40, which reads 82 registers instead of 42)
plus decoding and quality flags into a `Reading`; every reading is checked to be VALID.

Baseline in the same run: a plain pymodbus `AsyncModbusTcpClient` loop over the same meters
and the same requests, no decoding (what pymodbus itself costs).

    .venv/bin/python bench/edge_poll.py [--connections 50] [--seconds 8] [--runs 3]

Both processes share the machine's cores, so the simulator's cost is in the figure too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import add_json_arg, write_json
from edge.config import MeterConfig
from edge.poller import Poller
from protocols.maps import get_map
from protocols.planner import plan_reads
from protocols.reading import Quality


def _serve(meters: int, conn: mp.connection.Connection) -> None:
    from firmware_sim.clock import SimClock
    from firmware_sim.grid_service import DEFAULT_START_S, build_simulation, start_service

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    async def main() -> None:
        sim = build_simulation(meters=meters, seed=1)
        svc = await start_service(sim, SimClock(DEFAULT_START_S, 60.0), base_port=0,
                                  meter_base_port=0)
        models = sim.grid.meter_models()
        targets = [(e["port"], e["units"][0]["meter_id"]) for e in svc.endpoints  # type: ignore[index]
                   if e["per_meter"] and models[e["units"][0]["meter_id"]] == "sdm630"]  # type: ignore[index]
        conn.send(json.dumps(targets))
        while not conn.poll():
            await asyncio.sleep(0.25)
            sim.advance_to(svc.store.now())
        await svc.stop()

    asyncio.run(main())


async def _poller_run(targets: list[tuple[int, str]], seconds: float,
                      max_gap: int) -> tuple[float, int]:
    meters = [MeterConfig(id=m, map="sdm630", host="127.0.0.1", port=p, unit_id=1)
              for p, m in targets]
    poller = Poller(meters, timeout=2.0, retries=0, max_gap=max_gap)
    await poller.poll_all()  # connect every link first
    n = bad = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for o in await poller.poll_all():
            n += 1
            bad += o.reading.quality is not Quality.VALID
    rate = n / (time.perf_counter() - t0)
    poller.close()
    return rate, bad


async def _pymodbus_run(targets: list[tuple[int, str]], seconds: float, max_gap: int) -> float:
    from pymodbus.client import AsyncModbusTcpClient

    plan = plan_reads(get_map("sdm630"), max_gap=max_gap)
    clients = [AsyncModbusTcpClient("127.0.0.1", port=p, timeout=2.0, retries=0) for p, _ in targets]
    for c in clients:
        await c.connect()
    counts = [0] * len(clients)
    stop = time.perf_counter() + seconds

    async def loop(i: int, c: AsyncModbusTcpClient) -> None:
        while time.perf_counter() < stop:
            for r in plan:
                rr = await c.read_input_registers(r.start, count=r.count, device_id=1)
                assert not rr.isError()
            counts[i] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(i, c) for i, c in enumerate(clients)))
    rate = sum(counts) / (time.perf_counter() - t0)
    for c in clients:
        c.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--meters", type=int, default=300, help="customers in the simulated grid")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-gap", type=int, default=8,
                    help="planner gap (agent default 8: 3 requests; 40: 2 requests)")
    add_json_arg(ap)
    args = ap.parse_args()
    print("command:", shlex.join([sys.executable, *sys.argv]))
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(args.meters, child))
    proc.start()
    try:
        targets = [tuple(t) for t in json.loads(parent.recv())][: args.connections]
        if len(targets) < args.connections:
            raise SystemExit(f"only {len(targets)} SDM630 meters; raise --meters")
        n_req = len(plan_reads(get_map("sdm630"), max_gap=args.max_gap))
        print(f"simulator up: {len(targets)} SDM630 meters, one TCP port each; "
              f"plan {n_req} requests per meter read")
        agent, base = [], []
        for run in range(args.runs):
            rate, bad = asyncio.run(_poller_run(targets, args.seconds, args.max_gap))  # type: ignore[arg-type]
            agent.append(rate)
            b = asyncio.run(_pymodbus_run(targets, args.seconds, args.max_gap))  # type: ignore[arg-type]
            base.append(b)
            print(f"run {run + 1}: Poller {rate:,.0f} meter reads/s (non-VALID {bad}); "
                  f"plain pymodbus loop {b:,.0f} meter reads/s ({n_req * b:,.0f} requests/s)")
        parent.send("stop")
        print(f"median: Poller {statistics.median(agent):,.0f} SDM630 meter reads/s over "
              f"{args.connections} connections; baseline pymodbus loop "
              f"{statistics.median(base):,.0f} meter reads/s")
        write_json(args.json, {"poller_reads_per_s": statistics.median(agent),
                               "pymodbus_reads_per_s": statistics.median(base),
                               "requests_per_read": n_req, "connections": args.connections,
                               "runs_poller": agent, "runs_pymodbus": base})
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()


if __name__ == "__main__":
    main()
