"""`wattrail billing determinants|export|revenue`: billing determinants per customer and
month, their CSV export, and the revenue report.

    wattrail billing determinants --period 2026-01        VEE + determinants, stored and shown
    wattrail billing export --period 2026-01 [-o F.csv]   the latest run's determinants as CSV
    wattrail billing revenue --period 2026-01 [--level feeder]   quantity, price, fee and loss

Exit codes: 0 done, 1 the input is invalid (period, file, zone), 2 the database refused.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from rich.table import Table

from wattrail.commands.mdm import Dsn, Period, Step, Zone, err, fail, mdm_errors, out, progress_line
from wattrail.commands.store import connect_or_exit, require_schema

app = typer.Typer(help="Billing determinants per customer and month, and the revenue report.",
                  no_args_is_help=True)
billing_app = app


@billing_app.command("determinants")
def billing_determinants(period: Period, dsn: Dsn = "", time_zone: Zone = None,
                         step: Step = 900,
                         chunk: Annotated[int, typer.Option(help="meters per chunk")] = 5000,
                         show: Annotated[int, typer.Option(help="rows to print")] = 20) -> None:
    """VEE for the month, then every customer's billing determinants at the tariff in force,
    stored as a billing run."""
    from cloud.mdm.billing import run_billing

    with connect_or_exit(dsn) as conn:
        require_schema(conn, "billing_runs")
        try:
            res = run_billing(conn, period, step_s=step, default_zone=time_zone,
                              chunk_meters=chunk, progress=progress_line("vee + determinants"))
        except mdm_errors() as exc:
            fail(str(exc))
        rows = _determinant_rows(conn, res.run_id)
    t = Table("customer", "tariff", "days", "kWh", "by period", "max kW", "estimated",
              "missing", "amount", "VEE", title=f"billing run {res.run_id}, {period}")
    for r in rows[:show]:
        t.add_row(r["customer_id"], r["tariff_id"], f"{r['first_day']:%d}-{r['last_day']:%d}",
                  f"{r['total_kwh']:,.1f}", ", ".join(f"{k} {v:,.1f}"
                                                      for k, v in r["kwh_by_period"].items()),
                  "-" if r["max_kw"] is None else f"{r['max_kw']:.2f}",
                  "-" if r["estimated_share"] is None else f"{r['estimated_share']:.1%}",
                  str(r["missing"]), "not billable" if r["amount"] is None
                  else f"{r['amount']:,.2f} {r['currency']}", r["vee_status"])
    out.print(t)
    out.print(f"{res.rows:,} determinant rows, {res.complete:,} billable; "
              f"{res.seconds['total']:.1f} s (VEE {res.seconds['vee']:.1f}, determinants "
              f"{res.seconds['determinants']:.1f}, write {res.seconds['write']:.1f}); "
              "export: wattrail billing export --period " + period)


_COLUMNS = ("customer_id", "meter_id", "tariff_id", "tariff_from", "first_day", "last_day",
            "currency", "kwh_by_period", "total_kwh", "export_kwh", "kvarh", "max_kw",
            "max_kw_at", "demand_window_s", "estimated_share", "intervals", "missing", "amount",
            "vee_status")


def _determinant_rows(conn: psycopg.Connection[Any], run: int) -> list[dict[str, Any]]:
    from cloud.store import mdm_sql

    return [dict(zip(_COLUMNS, r, strict=True))
            for r in conn.execute(mdm_sql.DETERMINANTS, {"run": run})]


@billing_app.command("export")
def billing_export(period: Period,
                   output: Annotated[Path | None, typer.Option(
                       "-o", "--output", help="CSV file (default: standard output)")] = None,
                   run: Annotated[int | None, typer.Option(
                       help="billing run id (default: the period's latest)")] = None,
                   dsn: Dsn = "") -> None:
    """A billing run's determinants as CSV (one column per TOU period; times in UTC ISO 8601)."""
    from cloud.store import mdm_sql
    from wattrail.commands.results import csv_cell

    with connect_or_exit(dsn) as conn:
        require_schema(conn, "billing_runs")
        if run is None:
            r = conn.execute(mdm_sql.LATEST_BILLING_RUN, {"period": period}).fetchone()
            if r is None:
                fail(f"no billing run for {period}: run `wattrail billing determinants "
                      f"--period {period}` first")
            run = int(r[0])
        rows = _determinant_rows(conn, run)
    periods = sorted({k for r in rows for k in r["kwh_by_period"]})
    head = [c for c in _COLUMNS if c != "kwh_by_period"] + [f"kwh_{p}" for p in periods]
    fh = open(output, "w", newline="") if output else sys.stdout  # noqa: SIM115
    try:
        w = csv.writer(fh)
        w.writerow(head)
        for r in rows:
            cells = [csv_cell(r[c]) for c in _COLUMNS if c != "kwh_by_period"]
            w.writerow(cells + [csv_cell(r["kwh_by_period"].get(p)) for p in periods])
    finally:
        if output:
            fh.close()
    if output:
        err.print(f"{len(rows):,} rows of billing run {run} written to {output}")



@billing_app.command("revenue")
def billing_revenue(period: Period,
                    run: Annotated[int | None, typer.Option(
                        help="billing run id (default: the period's latest)")] = None,
                    analysis_run: Annotated[int | None, typer.Option(
                        "--analysis-run", help="analytics run (default: newest covering)")] = None,
                    level: Annotated[str, typer.Option(
                        help="transformer, feeder or region")] = "transformer",
                    as_json: Annotated[bool, typer.Option("--json", help="the whole report")] = False,
                    dsn: Dsn = "") -> None:
    """Quantity, price, fee and loss side by side: energy in, billed, losses, estimates,
    amount billed and revenue at risk, per transformer, feeder or region."""
    from cloud.mdm.revenue import RevenueError, revenue_report

    if level not in ("transformer", "feeder", "region"):
        fail(f"--level {level!r}: give transformer, feeder or region")
    with connect_or_exit(dsn) as conn:
        require_schema(conn, "billing_runs")
        try:
            rep = revenue_report(conn, period, billing_run=run, analysis_run=analysis_run)
        except RevenueError as exc:
            fail(str(exc))
    if as_json:
        out.print_json(json.dumps(rep.as_dict(), default=str))
        return

    def num(v: float | None, fmt: str = ",.0f") -> str:
        return "-" if v is None else format(v, fmt)

    cur = rep.currency or ""
    t = Table(level, "customers", "in kWh", "billed kWh", "technical", "NTL kWh (±1σ)",
              "estimated", f"billed {cur}", f"at risk NTL {cur}", f"at risk est. {cur}",
              title=f"revenue {rep.period} (billing run {rep.billing_run_id}, analytics run "
                    f"{rep.analysis_run_id or '-'})")
    for r in rep.rows:
        if r.level != level:
            continue
        t.add_row(r.entity_id, str(r.customers), num(r.energy_in_kwh), num(r.billed_kwh),
                  num(r.technical_kwh), "-" if r.ntl_kwh is None
                  else f"{r.ntl_kwh:,.0f} ± {r.ntl_sigma_kwh or 0:,.0f}",
                  "-" if r.estimated_share is None else f"{r.estimated_share:.1%}",
                  num(r.amount_billed, ",.2f") + (f" (+{r.not_billable} not billable)"
                                                  if r.not_billable else ""),
                  num(r.revenue_at_risk_ntl, ",.2f"), num(r.revenue_at_risk_estimates, ",.2f"))
    out.print(t)
    if rep.special:
        s = Table("customer", "class", "tariffs", "kWh", "max kW", "contract kVA", "estimated",
                  f"amount {cur}", "VEE", title="large and special customers")
        for c in rep.special:
            s.add_row(c["customer_id"], c["class"], ", ".join(c["tariffs"]),
                      num(c["billed_kwh"]), num(c["max_kw"], ".1f"), num(c["contract_kva"], ".0f"),
                      "-" if c["estimated_share"] is None else f"{c['estimated_share']:.1%}",
                      "not billable" if c["amount"] is None else f"{c['amount']:,.2f}",
                      c["vee_status"])
        out.print(s)
    for note in rep.notes:
        out.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)


@billing_app.command("tariff-check")
def billing_tariff_check(period: Period, dsn: Dsn = "", time_zone: Zone = None,
                         step: Step = 900,
                         show: Annotated[int, typer.Option(help="rows to print")] = 30,
                         as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Customers whose tariff does not fit what they do (a shop on a residential tariff, PV
    export without an export tariff, demand above contract, special customers without interval
    data), ranked, with the evidence."""
    from cloud.mdm.tariff_check import check_tariffs

    with connect_or_exit(dsn) as conn:
        require_schema(conn, "tariffs")
        try:
            res = check_tariffs(conn, period, step_s=step, default_zone=time_zone)
        except mdm_errors() as exc:
            fail(str(exc))
    if as_json:
        out.print_json(json.dumps({"period": res.period, "customers": res.customers,
                                   "not_run": res.not_run,
                                   "findings": [f.__dict__ for f in res.findings]}))
        return
    t = Table("rank", "customer", "meter", "finding", "score", "evidence",
              title=f"tariff execution check {period}: {len(res.findings)} finding(s) among "
                    f"{res.customers:,} customers")
    for k, f in enumerate(res.findings[:show], 1):
        keys = ("tariff_id", "max_kw", "business_share", "export_kwh", "missing_share",
                "contract_kva", "z_max_kw", "z_business_share")
        t.add_row(str(k), f.customer_id, f.meter_id, f.kind, f"{f.score:.2f}",
                  ", ".join(f"{key} {f.evidence[key]}" for key in keys
                            if f.evidence.get(key) is not None))
    out.print(t)
    for name, why in res.not_run.items():
        out.print(f"[yellow]{name} did not run:[/yellow] {why}", highlight=False, soft_wrap=True)
