"""`wattrail edge`: run an edge agent, or report on one.

    wattrail edge run --config agent.toml       # until SIGINT/SIGTERM
    wattrail edge --config agent.toml           # the same (the original spelling)
    wattrail edge status --config agent.toml    # outbox + live metrics, if it is running
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="Run an edge agent (`run`) or report on one (`status`).",
                  no_args_is_help=False)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", exists=True, dir_okay=False,
                                         help="agent TOML (see docs/edge-agent.md)")]


def _load(config: Path) -> Any:
    from pydantic import ValidationError

    from edge.config import load_config

    try:
        return load_config(config)
    except ValidationError as exc:
        typer.echo(f"error: {config} is not a valid agent configuration:\n{exc}", err=True)
        raise typer.Exit(2) from exc


def run_agent(config: Path, cycles: int | None, log_level: str) -> None:
    from edge.agent import Agent

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = _load(config)
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


@app.callback(invoke_without_command=True)
def edge(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", exists=True, dir_okay=False,
                                                help="agent TOML: run it (= `edge run`)")] = None,
    cycles: Annotated[int | None, typer.Option(help="stop after this many poll cycles")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run an edge agent: poll the meters, sign each cycle into the hash chain, keep it in the
    outbox and publish it over mutual-TLS MQTT until the cloud confirms it."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(2)
    run_agent(config, cycles, log_level)


@app.command()
def run(
    config: ConfigOpt,
    cycles: Annotated[int | None, typer.Option(help="stop after this many poll cycles")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run an edge agent until SIGINT/SIGTERM (or --cycles)."""
    run_agent(config, cycles, log_level)


def fetch_metrics(host: str, port: int, timeout: float = 2.0) -> dict[str, float] | None:
    """The agent's live metrics as {"name{label=...}": value}, or None if nobody answers."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def status_report(cfg: Any, now_s: float | None = None) -> dict[str, Any]:
    from edge.outbox import Outbox

    now_s = time.time() if now_s is None else now_s
    report: dict[str, Any] = {"agent_id": cfg.agent_id, "outbox_path": str(cfg.outbox)}
    try:
        s = Outbox.inspect(cfg.outbox)
    except FileNotFoundError as exc:
        report["outbox_error"] = str(exc)
    else:
        report["outbox"] = {
            "depth": s.depth, "bytes": s.size_bytes, "head_seq": s.head_seq,
            "confirmed_seq": s.confirmed_seq, "unconfirmed": s.head_seq - s.confirmed_seq,
            "oldest_seq": s.oldest_seq,
            "oldest_age_s": (None if s.oldest_created_ms is None
                             else round(max(0.0, now_s - s.oldest_created_ms / 1000), 3)),
        }
    if cfg.health_port:
        report["health_url"] = f"http://{cfg.health_host}:{cfg.health_port}/metrics"
        report["live"] = fetch_metrics(cfg.health_host, cfg.health_port)
    else:
        report["live"] = None
    return report


_LIVE_KEYS = (
    ("broker connected", "wattrail_edge_broker_connected"),
    ("last ack seq", "wattrail_edge_last_ack_seq"),
    ("last PUBACK seq", "wattrail_edge_last_puback_seq"),
    ("publish lag (s)", "wattrail_edge_publish_lag_seconds"),
    ("connect attempts", "wattrail_edge_connect_attempts_total"),
    ("connect failures", "wattrail_edge_connect_failures_total"),
    ("sealed", "wattrail_edge_sealed_total"),
    ("events", "wattrail_edge_events_total"),
    ("last cycle (s)", "wattrail_edge_last_cycle_seconds"),
)


@app.command()
def status(
    config: ConfigOpt,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Report an agent's outbox (depth, head and confirmed seq, oldest age) from its file and,
    if its health port answers, its live metrics. Exit 1 when the outbox file is missing."""
    cfg = _load(config)
    report = status_report(cfg)
    if as_json:
        typer.echo(json.dumps(report, indent=1, sort_keys=True))
    else:
        typer.echo(f"agent {report['agent_id']}")
        ob = report.get("outbox")
        if ob is None:
            typer.echo(f"  outbox: {report['outbox_error']}")
        else:
            age = "-" if ob["oldest_age_s"] is None else f"{ob['oldest_age_s']:.1f} s"
            typer.echo(f"  outbox {report['outbox_path']}: depth {ob['depth']} ({ob['bytes']} "
                       f"bytes), head seq {ob['head_seq']}, confirmed seq {ob['confirmed_seq']}, "
                       f"unconfirmed {ob['unconfirmed']}, oldest {age}")
        live = report["live"]
        if live is None:
            where = report.get("health_url", "no health_port configured")
            typer.echo(f"  live metrics: not available ({where})")
        else:
            typer.echo(f"  live metrics ({report['health_url']}):")
            for label, key in _LIVE_KEYS:
                if key in live:
                    typer.echo(f"    {label}: {live[key]:g}")
            bad = sorted(k.split('meter="')[1].split('"')[0] for k, v in live.items()
                         if k.startswith("wattrail_edge_meter_circuit_open") and v)
            typer.echo(f"    meters with open circuit: {', '.join(bad) or 'none'}")
    if "outbox" not in report:
        raise typer.Exit(1)
