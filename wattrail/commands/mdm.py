"""`wattrail vee|tariffs` and `wattrail topology time-zone`: meter data management (billing is
wattrail/commands/billing.py, on the helpers here).

    wattrail topology time-zone REGION Europe/Berlin     a region's IANA zone (or --all)
    wattrail tariffs import tariffs.json [--assign a.csv]  tariff versions, customers' tariffs
    wattrail tariffs list
    wattrail vee run --period 2026-01                     validate, estimate, store the layer
    wattrail vee status [--run N] [--meter M]             rules, meter-days, a meter's history

Exit codes: 0 done, 1 the input is invalid (period, file, zone), 2 the database refused.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from wattrail.commands.store import connect_or_exit, require_schema

err = Console(stderr=True)
out = Console()

Dsn = Annotated[str, typer.Option(envvar="WATTRAIL_DSN", show_envvar=True,
                                  help="PostgreSQL DSN of the Wattrail database")]
Period = Annotated[str, typer.Option("--period", help="local calendar month, YYYY-MM")]
Zone = Annotated[str | None, typer.Option(
    "--time-zone", help="IANA zone for regions that have none (e.g. Europe/Berlin)")]
Step = Annotated[int, typer.Option("--step", help="interval length in seconds (900, 1800, 3600)")]

vee_app = typer.Typer(help="Validation, estimation and editing of interval data.",
                      no_args_is_help=True)
tariffs_app = typer.Typer(help="Tariffs and which customer is on which.", no_args_is_help=True)


def mount(app: typer.Typer) -> None:
    from wattrail.commands.store import topology_app

    app.add_typer(vee_app, name="vee")
    app.add_typer(tariffs_app, name="tariffs")
    topology_app.command("time-zone")(time_zone_cmd)


def fail(msg: str, code: int = 1) -> NoReturn:
    err.print(f"[red]{msg}[/red]", highlight=False)
    raise typer.Exit(code)


def progress_line(label: str) -> Callable[[int, int], None]:
    """A line per chunk: on a terminal and in a log alike (no live widget to lose)."""
    started = time.monotonic()

    def report(done: int, total: int) -> None:
        err.print(f"{label}: {done:,} of {total:,} meters ({time.monotonic() - started:.1f} s)",
                  highlight=False)
    return report


def time_zone_cmd(
    region: Annotated[str | None, typer.Argument(help="region id (omit with --all)")] = None,
    tz: Annotated[str, typer.Argument(help="IANA zone, e.g. Europe/Berlin")] = "",
    all_: Annotated[bool, typer.Option("--all", help="every region that has no zone yet")] = False,
    dsn: Dsn = "",
) -> None:
    """Set a region's IANA time zone: its days, months and billing periods are local."""
    from cloud.mdm.calendar import CalendarError, zone
    from cloud.store import mdm_sql

    target: str | None = region
    if all_ and region and not tz:
        target, tz = None, region  # `time-zone --all Europe/Berlin`
    if not tz or (target is None) == (not all_):
        fail("give REGION ZONE, or --all ZONE for every region without one")
    try:
        zone(tz)
    except CalendarError as exc:
        fail(str(exc))
    with connect_or_exit(dsn) as conn:
        require_schema(conn, "tariffs")
        if all_:
            n = conn.execute(mdm_sql.SET_TIME_ZONE_WHERE_NONE, {"tz": tz}).rowcount
        else:
            n = conn.execute(mdm_sql.SET_TIME_ZONE, {"tz": tz, "r": target}).rowcount
            if n == 0:
                fail(f"no region {target!r}: list them with `wattrail topology import` output "
                      "or SELECT region_id FROM regions")
    out.print(f"{n} region(s) now in {tz}")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        fail(f"{path}: not JSON ({exc})")


def _assignments(path: Path) -> list[dict[str, Any]]:
    """customer_id,tariff_id,valid_from[,valid_to] rows (dates YYYY-MM-DD)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        fail(f"{path}: no such file")
    rows = list(csv.DictReader(text.splitlines()))
    need = {"customer_id", "tariff_id", "valid_from"}
    if not rows or not need <= set(rows[0]):
        fail(f"{path}: give a CSV with columns customer_id,tariff_id,valid_from[,valid_to]")
    out_rows = []
    for i, r in enumerate(rows, 2):
        try:
            a = date.fromisoformat(r["valid_from"])
            b = date.fromisoformat(r["valid_to"]) if r.get("valid_to") else None
        except ValueError:
            fail(f"{path}:{i}: dates as YYYY-MM-DD, got {r['valid_from']!r} / "
                  f"{r.get('valid_to')!r}")
        if b is not None and b < a:
            fail(f"{path}:{i}: valid_to is before valid_from")
        out_rows.append({"customer_id": r["customer_id"], "tariff_id": r["tariff_id"],
                         "valid_from": a, "valid_to": b})
    return out_rows


@tariffs_app.command("import")
def tariffs_import(
    file: Annotated[Path, typer.Argument(help="JSON: an array of tariffs or {\"tariffs\": [...]}")],
    assign: Annotated[Path | None, typer.Option(
        "--assign", help="CSV customer_id,tariff_id,valid_from[,valid_to]")] = None,
    dsn: Dsn = "",
) -> None:
    """Import tariff versions (and customers' assignments); all or nothing."""
    from cloud.mdm.tariffs import TariffError, parse_tariffs
    from cloud.store import mdm_sql

    try:
        tariffs = parse_tariffs(_read_json(file), where=str(file))
    except TariffError as exc:
        fail(f"{exc}; nothing was imported")
    rows = _assignments(assign) if assign is not None else []
    with connect_or_exit(dsn) as conn:
        require_schema(conn, "tariffs")
        known_t = {r[0] for r in conn.execute(mdm_sql.KNOWN_TARIFF_IDS)} | {
            t.tariff_id for t in tariffs}
        bad_t = sorted({r["tariff_id"] for r in rows} - known_t)
        custs = {r[0] for r in conn.execute(mdm_sql.KNOWN_CUSTOMERS,
                                            {"c": [r["customer_id"] for r in rows]})}
        bad_c = sorted({r["customer_id"] for r in rows} - custs)
        if bad_t or bad_c:
            fail(f"{assign}: unknown tariffs {bad_t[:5]} / customers {bad_c[:5]}; "
                  "nothing was imported")
        with conn.transaction():
            for t in tariffs:
                conn.execute(mdm_sql.UPSERT_TARIFF, {
                    "tariff_id": t.tariff_id, "valid_from": t.valid_from, "valid_to": t.valid_to,
                    "class": t.class_, "currency": t.currency,
                    "doc": t.model_dump_json(by_alias=True)})
            for r in rows:
                conn.execute(mdm_sql.UPSERT_ASSIGNMENT, r)
    out.print(f"imported {len(tariffs)} tariff version(s) and {len(rows)} assignment(s)")


@tariffs_app.command("list")
def tariffs_list(dsn: Dsn = "") -> None:
    """Every stored tariff version with its periods and prices."""
    from cloud.mdm.fetch import fetch_tariffs

    with connect_or_exit(dsn) as conn:
        require_schema(conn, "tariffs")
        tariffs = fetch_tariffs(conn)
    t = Table("tariff", "class", "valid", "periods and prices per kWh", "demand /kW", "export /kWh")
    for versions in tariffs.values():
        for v in versions:
            t.add_row(v.tariff_id, v.class_, f"{v.valid_from} .. {v.valid_to or ''}",
                      ", ".join(f"{n} {v.energy_price[n]:g}" for n in v.period_names),
                      f"{v.demand_charge_per_kw:g}",
                      "-" if v.export_price_per_kwh is None else f"{v.export_price_per_kwh:g}")
    out.print(t)


def mdm_errors() -> tuple[type[Exception], ...]:
    from cloud.mdm.calendar import CalendarError
    from cloud.mdm.fetch import MdmInputError
    from cloud.mdm.tariffs import TariffError

    return (CalendarError, MdmInputError, TariffError)


@vee_app.command("run")
def vee_run(period: Period, dsn: Dsn = "", time_zone: Zone = None, step: Step = 900,
            chunk: Annotated[int, typer.Option(help="meters per chunk (memory)")] = 5000) -> None:
    """Validate and estimate every customer meter's intervals of a local month; store the
    post-VEE layer (raw readings are not changed) and print what each rule found."""
    from cloud.mdm.run import run_vee

    with connect_or_exit(dsn) as conn:
        require_schema(conn, "vee_runs")
        try:
            res = run_vee(conn, period, step_s=step, default_zone=time_zone,
                          chunk_meters=chunk, progress=progress_line("vee"))
        except mdm_errors() as exc:
            fail(str(exc))
    _print_rules(res.rules)
    out.print(f"VEE run {res.run_id}: {res.meters:,} meters, meter-days valid "
              f"{res.days['valid']:,}, estimated {res.days['estimated']:,}, failed "
              f"{res.days['failed']:,}; {res.exceptions:,} intervals in the post-VEE layer "
              f"({res.seconds['total']:.1f} s)")


def _print_rules(rules: dict[str, dict[str, Any]]) -> None:
    t = Table("rule", "intervals failed", "note", title="validation rules")
    for name, r in rules.items():
        t.add_row(name, f"{r['failed']:,}" if r["ran"] else "-",
                  "" if r["ran"] else f"did not run: {r['why_not']}")
    out.print(t)


@vee_app.command("status")
def vee_status(run: Annotated[int | None, typer.Option(help="VEE run id (default: latest)")] = None,
               meter: Annotated[str | None, typer.Option(help="a meter's VEE history")] = None,
               dsn: Dsn = "") -> None:
    """A VEE run's rules and meter-days, or one meter's days and edited intervals."""
    from cloud.store import mdm_sql

    with connect_or_exit(dsn) as conn:
        require_schema(conn, "vee_runs")
        if run is None:
            latest = conn.execute(mdm_sql.VEE_RUNS, {"n": 1}).fetchone()
            if latest is None:
                fail("no VEE run yet: run `wattrail vee run --period YYYY-MM`")
            run = int(latest[0])
        row = conn.execute(mdm_sql.VEE_RUN, {"run": run}).fetchone()
        if row is None:
            fail(f"no VEE run {run}")
        days = dict(conn.execute(mdm_sql.VEE_DAY_COUNTS, {"run": run}).fetchall())
        out.print(f"VEE run {run}: {row[1].astimezone():%Y-%m-%d %H:%M} .. "
                  f"{row[2].astimezone():%Y-%m-%d %H:%M %Z}, {row[4]:,} meters, step {row[3]} s")
        _print_rules(row[6])
        out.print("meter-days: " + ", ".join(f"{('valid', 'estimated', 'failed')[k]} {v:,}"
                                             for k, v in sorted(days.items())))
        if meter:
            t = Table("day", "status", "intervals", "estimated", "missing", "rules failed",
                      title=f"meter {meter}")
            from cloud.mdm.validation import Rule

            for d, st, fl, n, est, miss in conn.execute(mdm_sql.VEE_DAYS_OF_METER,
                                                        {"run": run, "m": meter}):
                t.add_row(str(d), ("valid", "estimated", "failed")[st], str(n), str(est),
                          str(miss), ", ".join(str(r.name).lower() for r in Rule if fl & r))
            out.print(t)
