"""`wattrail sim`: serve a simulated grid of meters over Modbus (firmware_sim)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer


def sim(
    meters: Annotated[int, typer.Option(help="customer meters to simulate")] = 2000,
    seed: Annotated[int, typer.Option(help="seed: the same seed gives the same grid and thefts")] = 1,
    grid: Annotated[Path | None, typer.Option(
        "--grid", help="grid JSON: loaded if it exists, else the generated grid is written there")
    ] = None,
    speed: Annotated[float, typer.Option(help="simulated seconds per real second")] = 60.0,
    theft_rate: Annotated[float, typer.Option(min=0.0, max=1.0,
                                              help="share of customers who steal")] = 0.05,
    fault_rate: Annotated[float, typer.Option(min=0.0, max=1.0,
                                              help="share of meters with injected faults")] = 0.0,
    truth: Annotated[Path | None, typer.Option("--truth", help="write the ground truth here")] = None,
    endpoints: Annotated[Path | None, typer.Option(
        help="write gateway host:port and unit ids here (JSON)")] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    base_port: Annotated[int, typer.Option(help="first TCP port; one port per gateway")] = 15020,
    meter_base_port: Annotated[int | None, typer.Option(
        help="also serve each meter on its own port from here")] = None,
    duration: Annotated[float | None, typer.Option(help="stop after this many real seconds")] = None,
) -> None:
    """Serve a simulated grid: every meter a real Modbus server behind RS-485-to-TCP gateways
    (one port per transformer), with losses, thieves and faults, and the ground truth."""
    from firmware_sim.grid_service import Status, format_status, run

    logging.basicConfig(level=logging.WARNING)
    tty = sys.stderr.isatty()

    def status(st: Status) -> None:
        line = format_status(st)
        sys.stderr.write(("\r" + line) if tty else line + "\n")
        sys.stderr.flush()

    run(meters=meters, seed=seed, grid_file=grid, speed=speed, theft_rate=theft_rate,
        fault_rate=fault_rate, truth_out=truth, endpoints_out=endpoints, host=host,
        base_port=base_port, meter_base_port=meter_base_port, duration_s=duration, status=status)
    if tty:
        sys.stderr.write("\n")
