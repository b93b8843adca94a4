"""`wattrail chaos run [SCENARIO] [--scale small|full]`: the reliability campaign.

Starts a private TimescaleDB + TLS Mosquitto (scripts/services --state-dir, removed afterwards),
runs each scenario of wattrail/chaos/ against it and prints the results table: readings
expected, stored, lost, duplicated, quarantined, seq gaps. Exit status 1 if any scenario lost,
duplicated, quarantined or left a gap. See docs/campaign.md.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Fault campaign against a private services instance (docs/campaign.md).",
                  no_args_is_help=True)


@app.command("run")
def run(
    scenario: Annotated[str | None, typer.Argument(
        help="broker-kill, agent-kill, partition, outbox-full, ingestor-kill, db-crash, "
             "disk-full, clock-jump, bad-envelopes (default: all)")] = None,
    scale: Annotated[str, typer.Option(help="small (seconds) or full (minutes)")] = "small",
) -> None:
    """Run the campaign (or one scenario) and print the results table."""
    from wattrail.chaos.fleet import SCALES
    from wattrail.chaos.registry import SCENARIOS
    from wattrail.chaos.results import table
    from wattrail.chaos.services import Services

    if scale not in SCALES:
        raise typer.BadParameter(f"--scale must be one of {', '.join(SCALES)}")
    names = [scenario] if scenario else list(SCENARIOS)
    for n in names:
        if n not in SCENARIOS:
            raise typer.BadParameter(f"unknown scenario {n!r}; one of {', '.join(SCENARIOS)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="wattrail-chaos-") as tmp:
        typer.echo(f"starting private services in {tmp} ...", err=True)
        svc = Services(Path(tmp) / "svc")
        try:
            for n in names:
                typer.echo(f"== {n} ({scale})", err=True)
                work = Path(tmp) / n
                work.mkdir()
                results.append(SCENARIOS[n](svc, SCALES[scale], work))
                typer.echo(table(results[-1:]), err=True)
        finally:
            svc.down()
    typer.echo(table(results))
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command("agent-proc", hidden=True)
def agent_proc(
    outbox: Annotated[Path, typer.Option()],
    agent_id: Annotated[str, typer.Option()],
    key_byte: Annotated[int, typer.Option()],
    envelopes: Annotated[int, typer.Option()],
    readings: Annotated[int, typer.Option()],
    interval: Annotated[float, typer.Option()],
    host: Annotated[str, typer.Option()],
    port: Annotated[int, typer.Option()],
    ca: Annotated[Path, typer.Option()],
    cert: Annotated[Path, typer.Option()],
    key: Annotated[Path, typer.Option()],
) -> None:
    """(internal) the edge agent process that `agent-kill` SIGKILLs."""
    from edge.publisher import BrokerConfig
    from wattrail.chaos.fleet import run_agent_proc

    raise typer.Exit(run_agent_proc(outbox, agent_id, key_byte, envelopes, readings, interval,
                                    BrokerConfig(host, port, ca, cert, key, keepalive=5)))


def mount(parent: typer.Typer) -> None:
    """`wattrail chaos ...` (wattrail/cli.py: `from wattrail.commands.chaos import mount as
    mount_chaos` then `mount_chaos(app)`)."""
    parent.add_typer(app, name="chaos")


if __name__ == "__main__":
    app()
