"""`wattrail edge --config agent.toml`: run an edge agent until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer


def edge(
    config: Annotated[Path, typer.Option("--config", "-c", exists=True, dir_okay=False,
                                         help="agent TOML (see docs/edge-agent.md)")],
    cycles: Annotated[int | None, typer.Option(help="stop after this many poll cycles")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run an edge agent: poll the meters, sign each cycle into the hash chain, keep it in the
    outbox and publish it over mutual-TLS MQTT until the cloud confirms it."""
    from pydantic import ValidationError

    from edge.agent import Agent
    from edge.config import load_config

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(config)
    except ValidationError as exc:
        typer.echo(f"error: {config} is not a valid agent configuration:\n{exc}", err=True)
        raise typer.Exit(2) from exc
    agent = Agent(cfg)
    log = logging.getLogger("wattrail.edge")
    log.info("agent %s: %d meters, key id %s, outbox %s (depth %d, head seq %d)", cfg.agent_id,
             len(cfg.meters), agent.kid.hex(), cfg.outbox, agent.outbox.depth,
             agent.outbox.head().seq)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await agent.run(stop, cycles=cycles)

    asyncio.run(main())
    log.info("stopped: sealed %d, refused (outbox full) %d, unconfirmed at exit %d",
             agent.stats.sealed, agent.stats.refused_full,
             agent.stats.last_seq - agent.publisher.stats.confirmed_seq)
