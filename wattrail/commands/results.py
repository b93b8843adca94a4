"""`wattrail suspects list` and `wattrail loss list`: a stored analysis run's results, as a
table (times in local time), CSV (spreadsheet-safe text) or JSON (ISO 8601 with offsets).

Exit codes: 0 listed, 1 no such run, 2 the database refused or is not migrated."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from cloud.store import archive_sql
from wattrail.commands.store import connect_or_exit, require_schema

err = Console(stderr=True)
out = Console()

Dsn = Annotated[str, typer.Option(envvar="WATTRAIL_DSN", show_envvar=True,
                                  help="PostgreSQL DSN of the Wattrail database")]


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


RunOpt = Annotated[int | None, typer.Option("--run", help="analysis run id (default: the latest)")]
FormatOpt = Annotated[Format, typer.Option("--format", help="table, csv or json")]

suspects_app = typer.Typer(help="Theft suspects of a stored analysis run.", no_args_is_help=True)
loss_app = typer.Typer(help="Energy balance and loss of a stored analysis run.", no_args_is_help=True)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, str) and v.startswith(_FORMULA_START):
        return "'" + v  # a spreadsheet would run it as a formula (OWASP CSV injection)
    return v


def _run_id(conn: psycopg.Connection[Any], run: int | None) -> tuple[int, dict[str, Any]]:
    row = conn.execute(
        "SELECT run_id, period_start, period_end, step_s, parameters FROM analysis_runs"
        + (" WHERE run_id = %s" if run is not None else " ORDER BY run_id DESC LIMIT 1"),
        [run] if run is not None else []).fetchone()
    if row is None:
        err.print("[red]no such analysis run[/red]" if run is not None else
                  "[red]no analysis run stored yet:[/red] run `wattrail analyze --from ... --to ...`")
        raise typer.Exit(1)
    rid, start, end, step, params = row
    return int(rid), {"run_id": int(rid), "period_start": start, "period_end": end, "step_s": step,
                      "notes": (params or {}).get("notes", []),
                      "not_computed": (params or {}).get("not_computed", {})}


def _json_default(v: Any) -> str:
    return v.isoformat() if isinstance(v, datetime) else str(v)


def local(t: datetime) -> str:
    """People read local time (the machine's TZ); CSV and JSON keep the offset."""
    return t.astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _emit(fmt: Format, head: dict[str, Any], cols: list[str], rows: list[dict[str, Any]],
          title: str, show: dict[str, str]) -> None:
    if fmt is Format.json:
        doc = {**head, "rows": rows}
        sys.stdout.write(json.dumps(doc, default=_json_default, indent=1) + "\n")
        return
    if fmt is Format.csv:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([csv_cell(r[c]) for c in cols])
        sys.stdout.write(buf.getvalue())
        return
    out.print(f"run {head['run_id']}: {local(head['period_start'])} .. {local(head['period_end'])}, "
              f"step {head['step_s'] // 60} min")
    for note in head["notes"]:
        out.print(f"[yellow]note:[/yellow] {note}")
    t = Table(*show.values(), title=title)
    for r in rows:
        cells = []
        for c in show:
            v = r[c]
            if isinstance(v, datetime):
                cells.append(local(v))
            elif isinstance(v, float):
                cells.append(f"{v / 1e3:,.1f}" if c.endswith("_wh") else f"{v:.3f}")
            else:
                cells.append("-" if v is None else str(v))
        t.add_row(*cells)
    out.print(t)


@suspects_app.command("list")
def suspects_list(
    dsn: Dsn,
    run: RunOpt = None,
    top: Annotated[int, typer.Option(min=1, help="the first N by rank")] = 50,
    transformer: Annotated[str | None, typer.Option(help="only this transformer's customers")] = None,
    min_score: Annotated[float, typer.Option(min=0.0, max=1.0, help="only scores at least this")] = 0.0,
    fmt: FormatOpt = Format.table,
) -> None:
    """The ranked suspects of a run with their score, estimated and allocated energy, strongest
    reason and the period of the evidence (energy in kWh in the table, Wh in CSV/JSON)."""
    with connect_or_exit(dsn) as conn:
        require_schema(conn, "analysis_suspects")
        rid, head = _run_id(conn, run)
        cur = conn.execute(
            "SELECT rank, meter_id, transformer_id, score, estimated_wh, allocated_wh,"
            " evidence->>'strongest', (evidence->'period'->>'from')::timestamptz,"
            " (evidence->'period'->>'to')::timestamptz, evidence->'evidence',"
            f" {archive_sql.METER_SUSPECT}"
            " FROM analysis_suspects s WHERE run_id = %s AND score >= %s"
            " AND (%s::text IS NULL OR transformer_id = %s) ORDER BY rank LIMIT %s",
            [rid, min_score, transformer, transformer, top])
        cols = ["rank", "meter_id", "transformer_id", "score", "estimated_wh", "allocated_wh",
                "strongest", "evidence_from", "evidence_to", "evidence", "connectivity_suspect"]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    _emit(fmt, head, cols, rows, "suspects", {
        "rank": "rank", "meter_id": "meter", "transformer_id": "transformer", "score": "score",
        "estimated_wh": "est. kWh", "allocated_wh": "alloc. kWh", "strongest": "strongest reason",
        "evidence_from": "from", "evidence_to": "to", "connectivity_suspect": "archive suspect"})


@loss_app.command("list")
def loss_list(
    dsn: Dsn,
    run: RunOpt = None,
    level: Annotated[str, typer.Option(help="transformer, feeder or region")] = "transformer",
    top: Annotated[int, typer.Option(min=1, help="the first N by NTL")] = 50,
    fmt: FormatOpt = Format.table,
) -> None:
    """Energy in and out, loss, technical loss, NTL with its sigma, completeness and revenue at
    risk per transformer (or feeder, region), worst NTL first. Missing values stay empty."""
    if level not in ("transformer", "feeder", "region"):
        raise typer.BadParameter("use transformer, feeder or region", param_hint="'--level'")
    with connect_or_exit(dsn) as conn:
        require_schema(conn, "analysis_loss")
        rid, head = _run_id(conn, run)
        cols = ["entity_id", "energy_in_wh", "energy_out_wh", "loss_wh", "loss_pct", "technical_wh",
                "ntl_wh", "ntl_sigma_wh", "completeness", "low_confidence", "revenue_at_risk"]
        cur = conn.execute(
            f"SELECT {', '.join(cols)}, {archive_sql.TX_SUSPECT} FROM analysis_loss l"
            " WHERE run_id = %s AND level = %s"
            " ORDER BY ntl_wh DESC NULLS LAST, entity_id LIMIT %s", [rid, level, top])
        cols.append("connectivity_suspect")
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    _emit(fmt, head, cols, rows, f"loss per {level}", {
        "entity_id": level, "energy_in_wh": "in kWh", "loss_wh": "loss kWh", "loss_pct": "loss %",
        "technical_wh": "technical kWh", "ntl_wh": "NTL kWh", "ntl_sigma_wh": "± kWh",
        "completeness": "complete", "low_confidence": "low conf.", "revenue_at_risk": "revenue at risk",
        "connectivity_suspect": "archive suspect"})
