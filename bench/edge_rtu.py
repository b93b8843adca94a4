"""RS-485 bus utilisation of the edge poller at 9600 baud: the share of bus time spent moving
useful frames.

A pty pair carries bytes instantly, whatever baud rate is set, so a bare socat pair cannot
show where a 9600-baud bus loses time. This benchmark puts a *line emulator* between two socat
pty pairs (firmware_sim.rtu.open_pty_pair):

    simulator RTU server ── pty pair 1 ── line emulator ── pty pair 2 ── edge Poller (RTU)

The emulator (a child process) is one half-duplex wire: every byte, in either direction,
occupies it for one character time (1 start + 8 data + parity + stop bits at the baud rate),
bytes are handed on in 16-byte chunks (a 16550 UART's FIFO trigger level) when their last bit
would have arrived, a direction cannot send while the other is on the wire, and a frame
cannot start until the line has been silent for 3.5 character times (the RTU frame
delimiter, which a compliant transmitter waits for). So the request is fully on the meter's
side before it can answer, and back-to-back frames cost what they cost on a real bus.

Measured: the real `edge.poller.Poller` reading the meters of one simulated gateway (the
simulator's `SimRtuServer`, every unit behind one line) back to back for `--seconds`.

    frames            = sum over successful requests of (request + response frame bytes)
                        x bits per character / baud
    busy share        = (frames + the 3.5-character silence before each frame) / wall time:
                        the share of bus time the master keeps the wire doing what the
                        protocol requires; the rest is idle time the poller adds (software
                        turnaround, waits, timeouts)
    frame share       = frames / wall time (its ceiling is below 100 %: the silences are
                        ~15 % of a 3-request SDM630 read at any baud rate)

    .venv/bin/python bench/edge_rtu.py [--baud 9600] [--meters 8] [--seconds 15] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import os
import select
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import add_json_arg, write_json
from edge.config import MeterConfig
from edge.poller import Poller
from edge.scheduler import RTU_SILENCE_CHARS, bits_per_char, rtu_frame_bytes
from firmware_sim.rtu import open_pty_pair
from protocols.reading import Quality

FIFO = 16


def _line(a_path: str, b_path: str, baud: int, bits: int, stop: mp.synchronize.Event) -> None:
    """The emulated wire between two pty ends, until `stop`."""
    char_s = bits / baud
    a = os.open(a_path, os.O_RDWR | os.O_NOCTTY)
    b = os.open(b_path, os.O_RDWR | os.O_NOCTTY)
    peer = {a: b, b: a}
    silence = RTU_SILENCE_CHARS * char_s
    busy_until = 0.0
    while not stop.is_set():
        ready, _, _ = select.select([a, b], [], [], 0.1)
        for src in ready:
            data = os.read(src, 4096)  # one write by a master or slave: one frame
            start = max(time.perf_counter(), busy_until + silence)
            for i in range(0, len(data), FIFO):
                piece = data[i:i + FIFO]
                due = start + (i + len(piece)) * char_s
                while (left := due - time.perf_counter()) > 0:
                    time.sleep(min(left, 0.0005) if left < 0.002 else left - 0.001)
                os.write(peer[src], piece)
            busy_until = start + len(data) * char_s


def _server(port: str, meters: int, conn: mp.connection.Connection) -> None:
    from firmware_sim.clock import SimClock
    from firmware_sim.datastore import Gateway, RegisterStore
    from firmware_sim.grid_service import DEFAULT_START_S, build_simulation
    from firmware_sim.meters import MeterReader
    from firmware_sim.modbus_server import SimRtuServer

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    async def main() -> None:
        sim = build_simulation(meters=100, seed=1)
        clock = SimClock(DEFAULT_START_S, 60.0)
        store = RegisterStore(MeterReader(sim), clock)
        gw_id, units = next(iter(sim.grid.gateways().items()))
        gateway = Gateway(gw_id, dict(units[:meters]))
        server = SimRtuServer(store, gateway, port, baudrate=9600)
        await server.serve_forever(background=True)
        models = sim.grid.meter_models()
        conn.send([(u, m, models[m]) for u, m in units[:meters]])
        while not conn.poll():
            await asyncio.sleep(0.25)
            sim.advance_to(store.now())
        await server.shutdown()

    asyncio.run(main())


async def _measure(port: str, units: list[tuple[int, str, str]], baud: int,
                   seconds: float, max_gap: int) -> tuple[float, float, int, int]:
    meters = [MeterConfig(id=m, map=model, transport="rtu", serial_port=port, baudrate=baud,
                          unit_id=u) for u, m, model in units]
    poller = Poller(meters, timeout=1.0, retries=0, max_gap=max_gap)
    await poller.poll_all()  # open the port, warm up
    bits = bits_per_char("N", 1)
    frame_chars = {m.id: sum(sum(rtu_frame_bytes(r)) for r in poller.plans[m.id]) for m in meters}
    silences = {m.id: 2 * RTU_SILENCE_CHARS * len(poller.plans[m.id]) for m in meters}  # 2 frames/read
    useful = minimum = 0.0
    ok = failed = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for o in await poller.poll_all():
            mid = o.reading.meter_id
            if o.reading.quality is Quality.VALID:
                ok += 1
                useful += frame_chars[mid] * bits / baud
                minimum += (frame_chars[mid] + silences[mid]) * bits / baud
            else:
                failed += 1
    wall = time.perf_counter() - t0
    poller.close()
    return useful / wall, minimum / wall, ok, failed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--meters", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-gap", type=int, default=8,
                    help="planner gap (agent default 8); larger = fewer, longer requests")
    add_json_arg(ap)
    args = ap.parse_args()
    print("command:", shlex.join([sys.executable, *sys.argv]))
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    ctx = mp.get_context("spawn")
    meter_side, client_side = open_pty_pair(), open_pty_pair()
    stop = ctx.Event()
    line = ctx.Process(target=_line, args=(meter_side.client_port, client_side.server_port,
                                           args.baud, bits_per_char("N", 1), stop))
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_server, args=(meter_side.server_port, args.meters, child))
    line.start()
    server.start()
    try:
        units = [tuple(u) for u in parent.recv()]
        models = sorted({u[2] for u in units})
        print(f"{len(units)} meters ({', '.join(models)}) on one emulated {args.baud}-baud 8N1 "
              f"line: simulator SimRtuServer {meter_side.server_port} <-> line emulator <-> "
              f"Poller {client_side.client_port}")
        shares, minima = [], []
        for run in range(args.runs):
            share, minimum, ok, failed = asyncio.run(
                _measure(client_side.client_port, units, args.baud, args.seconds, args.max_gap))  # type: ignore[arg-type]
            shares.append(share)
            minima.append(minimum)
            print(f"run {run + 1}: busy share {minimum:.1%} (frames + required silences), "
                  f"frame share {share:.1%}; {ok} meter reads ok, {failed} failed")
        parent.send("stop")
        print(f"median at {args.baud} baud: busy share {statistics.median(minima):.1%} of bus "
              f"time (frames + the 3.5-char silences the spec requires), frame share "
              f"{statistics.median(shares):.1%}")
        write_json(args.json, {"busy_share": statistics.median(minima),
                               "frame_share": statistics.median(shares), "baud": args.baud,
                               "meters": args.meters})
    finally:
        stop.set()
        server.join(timeout=10)
        line.join(timeout=5)
        for p in (server, line):
            if p.is_alive():
                p.terminate()
        meter_side.close()
        client_side.close()


if __name__ == "__main__":
    main()
