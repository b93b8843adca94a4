"""`wattrail demo`: the typer face of wattrail/demo/run.py."""

from __future__ import annotations

from typing import Annotated

import typer


def demo(
    meters: Annotated[int, typer.Option(help="customer meters on the simulated grid")] = 2000,
    days: Annotated[float, typer.Option(help="simulated days to stream")] = 2.0,
    speed: Annotated[float | None, typer.Option(
        help="a ceiling on the pace in simulated seconds per real second (default: as fast as "
             "the pipeline allows; the clock always waits for every agent's poll cycle)")] = None,
    theft_rate: Annotated[float, typer.Option(min=0.0, max=1.0,
                                              help="share of customers who steal")] = 0.10,
    seed: Annotated[int, typer.Option(help="grid and theft seed")] = 1,
    fault_rate: Annotated[float, typer.Option(min=0.0, max=1.0,
                                              help="share of meters with injected faults")] = 0.02,
    keep_running: Annotated[bool, typer.Option(help="leave the services up at the end")] = False,
) -> None:
    """Run the whole platform on a simulated grid on loopback: services, meters,
    edge agents, ingestors, transparency log; live progress, then the report.

    The simulated clock runs in lock step with the agents: it moves to the next
    15-minute poll instant only when every agent has sealed the current one, so
    the same seed gives the same readings and findings on a quiet or a loaded
    machine. For a simulator that runs by itself in accelerated real time (the
    compose stack), see `wattrail sim --speed`."""
    from wattrail.demo.run import run
    from wattrail.demo.setup import DemoOptions

    raise typer.Exit(run(DemoOptions(meters, days, speed, theft_rate, seed,
                                     fault_rate=fault_rate, outage=True,
                                     keep_running=keep_running)))
