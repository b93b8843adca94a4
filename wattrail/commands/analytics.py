"""`wattrail analyze|evaluate`: the analytics batch and its scoring against ground truth.
wattrail/cli.py mounts them with `wattrail.commands.analytics.mount(app)`. Exit codes: 0 done, 1 the
input (period, region, truth file) is invalid, 2 the database refused (connection, schema).

`wattrail analyze --every 15m --window 1d` is the scheduler a deployment runs: the same batch
over the last window, again every interval, until SIGTERM/SIGINT; a failed run (database
down, no readings yet) is logged and the next one comes on time."""

from __future__ import annotations

import json
import logging
import math
import re
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from wattrail.commands.store import connect_or_exit

err = Console(stderr=True)
out = Console()

Dsn = Annotated[str, typer.Option(envvar="WATTRAIL_DSN", show_envvar=True,
                                  help="PostgreSQL DSN of the Wattrail database")]


def mount(app: typer.Typer) -> None:
    """Add `analyze` and `evaluate` to the wattrail command line."""
    from wattrail.commands.results import loss_app, suspects_app

    app.command("analyze")(analyze_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.add_typer(suspects_app, name="suspects")  # suspects list
    app.add_typer(loss_app, name="loss")  # loss list



def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=t.tzinfo or UTC)


def _num(x: Any, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """`90s`, `15m`, `1h30m`, `1d`, `2w` as a timedelta (> 0); ValueError says the format."""
    spec = text.strip().lower()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(spec):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if not spec or pos != len(spec) or total <= 0:
        raise ValueError(f"{text!r} is not a duration: use a number and a unit s, m, h, d or w, "
                         "e.g. 15m, 1h30m, 1d")
    return timedelta(seconds=total)


def schedule_window(now: datetime, window: timedelta, step_s: int) -> tuple[datetime, datetime]:
    """The period one scheduled run analyses: `window` long, ending at the last step boundary
    (so runs line up with the analysis grid and two runs in one step analyse the same period)."""
    end_s = math.floor(now.timestamp() / step_s) * step_s
    end = datetime.fromtimestamp(end_s, UTC)
    return end - window, end


def run_schedule(run: Callable[[datetime, datetime], str], *, every: timedelta, window: timedelta,
                 step_s: int, stop: threading.Event, log: logging.Logger,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 max_runs: int | None = None) -> tuple[int, int]:
    """Call `run(start, end)` for the last `window` every `every` until `stop` is set (or
    `max_runs`); `run` returns a one-line summary to log. Returns (runs, failures)."""
    runs = failures = 0
    while not stop.is_set() and (max_runs is None or runs < max_runs):
        began = time.monotonic()
        start, end = schedule_window(now(), window, step_s)
        runs += 1
        try:
            log.info("run %d: %s .. %s: %s", runs, start.isoformat(), end.isoformat(), run(start, end))
        except Exception as exc:  # any failure of one run is logged; the schedule goes on
            failures += 1
            log.error("run %d: %s .. %s failed: %s: %s", runs, start.isoformat(), end.isoformat(),
                      type(exc).__name__, exc)
        if max_runs is not None and runs >= max_runs:
            break
        stop.wait(max(0.0, every.total_seconds() - (time.monotonic() - began)))
    return runs, failures


def _duration_option(value: str | None) -> timedelta | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _scheduled(dsn: str, every: timedelta, window: timedelta, step: int | None,
               regions: list[str] | None, max_runs: int | None) -> None:
    from cloud.analytics.batch import analyze

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("wattrail.analytics.schedule")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}

    def once(start: datetime, end: datetime) -> str:
        with psycopg.connect(dsn, autocommit=True) as conn:  # a fresh connection per run
            res = analyze(conn, start, end, step_s=step, regions=regions)
        s = res.seconds
        return (f"analysis run {res.run_id}, {len(res.feed.topology.meter_ids):,} meters, "
                f"{res.fetch.rows:,} readings, {sum(s.values()):.1f} s")

    log.info("every %s, window %s, step %s (SIGTERM stops)", every, window,
             f"{step} s" if step else "the readings' cadence")
    try:
        runs, failures = run_schedule(once, every=every, window=window, step_s=step or 900, stop=stop,
                                      log=log, max_runs=max_runs)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped after %d run(s), %d failed", runs, failures)


def analyze_cmd(
    dsn: Dsn,
    start: Annotated[datetime | None, typer.Option("--from", help="UTC start, e.g. 2026-01-01")] = None,
    end: Annotated[datetime | None, typer.Option("--to", help="UTC end (its instant is included)")] = None,
    region: Annotated[list[str] | None, typer.Option(help="only this region (repeatable)")] = None,
    step: Annotated[int | None, typer.Option(
        help="analysis step, seconds (default: the readings' own cadence, e.g. 1800 for "
             "half-hourly data)")] = None,
    top: Annotated[int, typer.Option(help="rows in the printed summary")] = 10,
    every: Annotated[str | None, typer.Option(
        help="scheduler: run again every interval (15m, 1h, ...) until SIGTERM, over the last "
             "--window; instead of --from/--to")] = None,
    window: Annotated[str, typer.Option(help="scheduler: the period each run analyses")] = "1d",
    runs: Annotated[int | None, typer.Option(help="scheduler: stop after this many runs")] = None,
) -> None:
    """Run the loss/theft/quality/outage analytics for a period and store the results; with
    --every, run it over the last --window on a schedule."""
    from cloud.analytics.batch import analyze

    every_td = _duration_option(every)
    if every_td is not None:
        if start is not None or end is not None:
            raise typer.BadParameter("--every analyses the last --window; drop --from/--to",
                                     param_hint="'--every'")
        window_td = _duration_option(window)
        assert window_td is not None
        _scheduled(dsn, every_td, window_td, step, region or None, runs)
        return
    if start is None or end is None:  # a usage error, exit 2, as when both options were required
        raise typer.BadParameter("missing: give --from and --to, or --every for the scheduler",
                                 param_hint="'--from'" if start is None else "'--to'")
    from cloud.analytics.data.fetch import FetchError

    with connect_or_exit(dsn) as conn, err.status("starting") as status:
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
    out.print(f"run {res.run_id}: {len(f.topology.meter_ids):,} meters, {f.n_instants} instants "
              f"of {f.step_s // 60} min, "
              f"{res.fetch.rows:,} readings fetched; fetch {s['fetch']:.2f} s, kernels {s['kernels']:.2f} s, "
              f"write {s['write']:.2f} s")
    t = Table("transformer", "NTL kWh", "± kWh", "loss %", "complete", "revenue at risk",
              title="worst transformers by NTL")
    for tid, ntl, sig, pct, comp, low, rev in worst:
        t.add_row(tid, _num(None if ntl is None else ntl / 1e3, ".1f"),
                  _num(None if sig is None else sig / 1e3, ".1f"), _num(pct, ".1f"),
                  f"{comp:.2f}" + (" low" if low else ""), _num(rev, ".2f"))
    out.print(t)
    for note in res.notes:  # what the data lacked and what the run assumed instead
        out.print(f"[yellow]note:[/yellow] {note}")
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
    from cloud.analytics.evaluation.stored_run import EvaluationError, evaluate_run, format_table, jsonable

    try:
        doc = json.loads(truth.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        err.print(f"[red]{truth}: cannot read the truth file:[/red] {exc}")
        raise typer.Exit(1) from exc
    with connect_or_exit(dsn) as conn:
        try:
            result = evaluate_run(conn, doc, run)
        except EvaluationError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
    out.print(format_table(result), highlight=False)
    if json_out is not None:
        json_out.write_text(json.dumps(jsonable(result), indent=1, default=str), encoding="utf-8")
