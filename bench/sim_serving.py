"""How many SDM630 block reads per second one simulator process answers.

The server (2,000 customer meters by default, every gateway on its own port, accelerated
clock, background physics) runs in a child process; this process is the load: `--clients`
concurrent TCP connections, each spread over the gateways and repeatedly reading one SDM630
meter's planned blocks (protocols.planner) with function 04. The client is a minimal
hand-written Modbus/TCP framer on asyncio streams, so the number measures the server, not
pymodbus's client; every response is checked (transaction id, function code, byte count).

    .venv/bin/python bench/sim_serving.py [--meters 2000] [--clients 50] [--seconds 10] [--runs 3]

Prints each run's rate and the median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import shlex
import statistics
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import add_json_arg, write_json
from protocols.maps import get_map
from protocols.planner import plan_reads


def _serve(meters: int, seed: int, speed: float, conn: mp.connection.Connection) -> None:
    import logging

    from firmware_sim.clock import SimClock
    from firmware_sim.grid_service import DEFAULT_START_S, build_simulation, start_service

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    async def main() -> None:
        sim = build_simulation(meters=meters, seed=seed, theft_rate=0.05)
        clock = SimClock(DEFAULT_START_S, speed)
        svc = await start_service(sim, clock, host="127.0.0.1", base_port=0)
        targets = [
            (e["port"], u["unit_id"])
            for e in svc.endpoints
            for u in e["units"]  # type: ignore[attr-defined]
            if sim.grid.meter_models()[u["meter_id"]] == "sdm630"
        ]
        conn.send(json.dumps(targets))
        while not conn.poll():
            await asyncio.sleep(0.25)
            sim.advance_to(svc.store.now())
        conn.send(json.dumps({"requests": svc.store.stats.requests, "encodes": svc.store.stats.encodes}))
        await svc.stop()

    asyncio.run(main())


async def _client(port: int, unit: int, reads: list[tuple[int, int]], stop: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    tid = 0
    n = 0
    try:
        while time.monotonic() < stop:
            for start, count in reads:
                tid = (tid + 1) & 0xFFFF
                writer.write(struct.pack(">HHHBBHH", tid, 0, 6, unit, 4, start, count))
                head = await reader.readexactly(9)
                r_tid, _, length, _, fc, nbytes = struct.unpack(">HHHBBB", head)
                if r_tid != tid or fc != 4 or nbytes != 2 * count or length != 3 + nbytes:
                    raise RuntimeError(f"bad response tid={r_tid}/{tid} fc={fc} bytes={nbytes}")
                await reader.readexactly(nbytes)
                n += 1
    finally:
        counts.append(n)
        writer.close()


async def _load(targets: list[tuple[int, int]], clients: int, seconds: float) -> float:
    reads = [(r.start, r.count) for r in plan_reads(get_map("sdm630"))]
    counts: list[int] = []
    # spread connections over gateways and meters: every 7th target keeps them apart
    picks = [targets[(i * 7) % len(targets)] for i in range(clients)]
    t0 = time.monotonic()
    await asyncio.gather(*(_client(p, u, reads, t0 + seconds, counts) for p, u in picks))
    return sum(counts) / (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meters", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--speed", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1)
    add_json_arg(ap)
    args = ap.parse_args()
    print("command:", shlex.join([sys.executable, *sys.argv]))
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(args.meters, args.seed, args.speed, child))
    proc.start()
    try:
        targets = [tuple(t) for t in json.loads(parent.recv())]
        print(f"server up: {args.meters} customer meters, {len(targets)} SDM630 targets")
        rates = []
        for run in range(args.runs):
            rate = asyncio.run(_load(targets, args.clients, args.seconds))  # type: ignore[arg-type]
            rates.append(rate)
            print(f"run {run + 1}: {rate:,.0f} SDM630 block reads/s over {args.clients} connections")
        parent.send("stop")
        print("server counters:", parent.recv())
        print(f"median: {statistics.median(rates):,.0f} reads/s")
        write_json(args.json, {"reads_per_s": statistics.median(rates), "runs": rates,
                               "meters": args.meters, "clients": args.clients})
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()


if __name__ == "__main__":
    main()
