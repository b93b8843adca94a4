"""`wattrail analyze|evaluate`: the analytics batch and its scoring against ground truth.
wattrail/cli.py mounts them with `cloud.analytics.cli.mount(app)`. Exit codes: 0 done, 1 the
input (period, region, truth file) is invalid, 2 the database refused (connection, schema)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.table import Table

err = Console(stderr=True)
out = Console()

Dsn = Annotated[str, typer.Option(envvar="WATTRAIL_DSN", show_envvar=True,
                                  help="PostgreSQL DSN of the Wattrail database")]


def mount(app: typer.Typer) -> None:
    """Add `analyze` and `evaluate` to the wattrail command line."""
    app.command("analyze")(analyze_cmd)
    app.command("evaluate")(evaluate_cmd)


def _connect(dsn: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        err.print(f"[red]cannot connect to the database:[/red] {exc}".rstrip()
                  + "\nCheck --dsn / WATTRAIL_DSN and that the server runs (scripts/services status).")
        raise typer.Exit(2) from exc


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=t.tzinfo or UTC)


def _num(x: Any, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def analyze_cmd(
    start: Annotated[datetime, typer.Option("--from", help="UTC start, e.g. 2026-01-01")],
    end: Annotated[datetime, typer.Option("--to", help="UTC end (its instant is included)")],
    dsn: Dsn,
    region: Annotated[list[str] | None, typer.Option(help="only this region (repeatable)")] = None,
    step: Annotated[int, typer.Option(help="analysis step, seconds")] = 900,
    top: Annotated[int, typer.Option(help="rows in the printed summary")] = 10,
) -> None:
    """Run the loss/theft/quality/outage analytics for a period and store the results."""
    from cloud.analytics.batch import analyze
    from cloud.analytics.fetch import FetchError

    with _connect(dsn) as conn, err.status("starting") as status:
        try:
            res = analyze(conn, _utc(start), _utc(end), step_s=step, regions=region or None,
                          progress=lambda stage: status.update(f"{stage}..."))
        except FetchError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        except psycopg.errors.UndefinedTable as exc:
            err.print(f"[red]the database has no analytics tables:[/red] {exc}\nRun `wattrail db migrate`.")
            raise typer.Exit(2) from exc
        worst = conn.execute(
            "SELECT entity_id, ntl_wh, ntl_sigma_wh, loss_pct, completeness, low_confidence, revenue_at_risk"
            " FROM analysis_loss WHERE run_id = %s AND level = 'transformer'"
            " ORDER BY ntl_wh DESC NULLS LAST LIMIT %s", [res.run_id, top]).fetchall()
        suspects = conn.execute(
            "SELECT rank, meter_id, transformer_id, score, estimated_wh, evidence->>'strongest'"
            " FROM analysis_suspects WHERE run_id = %s ORDER BY rank LIMIT %s", [res.run_id, top]).fetchall()
    s = res.seconds
    f = res.feed
    out.print(f"run {res.run_id}: {len(f.topology.meter_ids):,} meters, {f.n_instants} instants, "
              f"{res.fetch.rows:,} readings fetched; fetch {s['fetch']:.2f} s, kernels {s['kernels']:.2f} s, "
              f"write {s['write']:.2f} s")
    t = Table("transformer", "NTL kWh", "± kWh", "loss %", "complete", "revenue at risk",
              title="worst transformers by NTL")
    for tid, ntl, sig, pct, comp, low, rev in worst:
        t.add_row(tid, _num(None if ntl is None else ntl / 1e3, ".1f"),
                  _num(None if sig is None else sig / 1e3, ".1f"), _num(pct, ".1f"),
                  f"{comp:.2f}" + (" low" if low else ""), _num(rev, ".2f"))
    out.print(t)
    t = Table("rank", "meter", "transformer", "score", "est. kWh", "strongest reason", title="top suspects")
    for rank, mid, tid, score, est, why in suspects:
        kwh = _num(None if est is None else est / 1e3, ".1f")
        t.add_row(str(rank), mid, tid, f"{score:.3f}", kwh, why or "-")
    out.print(t)


def evaluate_cmd(
    truth: Annotated[Path, typer.Option(exists=True, dir_okay=False,
                                        help="ground truth (wattrail-truth JSON)")],
    dsn: Dsn,
    run: Annotated[int | None, typer.Option(help="run id (default: the latest)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the full results here")] = None,
) -> None:
    """Score a stored analysis run against a ground-truth file (docs/analytics.md)."""
    from cloud.analytics.evaluate_run import EvaluationError, evaluate_run, format_table, jsonable

    try:
        doc = json.loads(truth.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        err.print(f"[red]{truth}: cannot read the truth file:[/red] {exc}")
        raise typer.Exit(1) from exc
    with _connect(dsn) as conn:
        try:
            result = evaluate_run(conn, doc, run)
        except EvaluationError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
    out.print(format_table(result), highlight=False)
    if json_out is not None:
        json_out.write_text(json.dumps(jsonable(result), indent=1, default=str), encoding="utf-8")
