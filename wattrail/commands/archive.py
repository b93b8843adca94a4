"""`wattrail archive check|issues|suspects|accept|corrections`: the customer archive's
completeness and connectivity checks (docs/archive.md).

    wattrail archive check [--days 7 | --from T --to T]   run both checks, store them, summarise
    wattrail archive issues [--kind K] [--region R]        the latest check's findings, with fixes
    wattrail archive suspects                              meters whose data say another
                                                           transformer or phase, by confidence
    wattrail archive accept MTR-1 --actor NAME             apply one suggestion, logged, and
                                                           rerun the loss report
    wattrail archive corrections                           the log of accepted corrections

A check never changes the archive; only `accept` does, one meter at a time.
Exit codes: 0 done, 1 the request cannot be done (nothing to accept, no readings), 2 the
database refused or is not migrated.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import psycopg
import typer
from rich.table import Table

from wattrail.commands.mdm import Dsn, Step, err, fail, out
from wattrail.commands.store import connect_or_exit, require_schema

app = typer.Typer(help="The customer archive: completeness findings and which meter really hangs on "
                       "which transformer and phase, from the data.", no_args_is_help=True)
_TABLES = ("archive_checks", "connectivity_suspicions", "archive_corrections")


def _local(t: datetime | None) -> str:
    return "-" if t is None else t.astimezone().strftime("%Y-%m-%d %H:%M %Z")


def _latest_check(conn: psycopg.Connection[Any], check_id: int | None) -> int:
    row = conn.execute("SELECT max(check_id) FROM archive_checks" if check_id is None else
                       "SELECT check_id FROM archive_checks WHERE check_id = %s",
                       [] if check_id is None else [check_id]).fetchone()
    if row is None or row[0] is None:
        fail("no archive check " + ("yet: run `wattrail archive check`" if check_id is None
                                    else f"{check_id}: see `wattrail archive check --help`"))
    return int(row[0])


@app.command("check")
def check_cmd(
    dsn: Dsn = "",
    start: Annotated[datetime | None, typer.Option("--from", help="UTC start (default: --days before the "
                                                                   "latest reading)")] = None,
    end: Annotated[datetime | None, typer.Option(
        "--to", help="UTC end (default: the latest reading)")] = None,
    days: Annotated[float, typer.Option(min=0.25, help="period length when --from is not given; "
                                                       "7 days of 15-min data find ~98% of "
                                                       "mis-associations (docs/archive.md)")] = 7.0,
    step: Step = 900,
    top: Annotated[int, typer.Option(help="suspicions to print")] = 20,
) -> None:
    """Run the completeness and connectivity checks over a period and store them as one check.
    The archive itself is not changed."""
    from cloud.analytics.data.fetch import FetchError
    from cloud.archive import store
    from cloud.store.archive_sql import LATEST_READING

    with connect_or_exit(dsn) as conn:
        require_schema(conn, *_TABLES)
        if end is None:
            row = conn.execute(LATEST_READING).fetchone()
            if row is None or row[0] is None:
                fail("there are no readings to check the archive against: import or ingest some first")
            end = row[0]
        end = end.replace(tzinfo=end.tzinfo or UTC)
        start = (start.replace(tzinfo=start.tzinfo or UTC) if start is not None
                 else end - timedelta(days=days))
        if start >= end:
            raise typer.BadParameter("--from must be before --to", param_hint="'--from'")
        t0 = time.monotonic()

        def say(stage: str) -> None:  # a plain line per stage: readable in a log as on a terminal
            err.print(f"[{time.monotonic() - t0:6.1f} s] {stage}", highlight=False)

        try:
            res = store.run_check(conn, start, end, step_s=step, progress=say)
        except FetchError as exc:
            fail(str(exc))
    out.print(f"check {res.check_id}: {_local(start)} to {_local(end)}, {len(res.findings)} findings, "
              f"{len(res.suspicions)} connectivity suspicions ({time.monotonic() - t0:.1f} s)")
    by_kind = Counter(f.kind for f in res.findings)
    t = Table("finding", "count", "severity", title="completeness")
    sev = {f.kind: f.severity for f in res.findings}
    for kind, n in by_kind.most_common():
        t.add_row(kind, str(n), sev[kind])
    out.print(t)
    _print_suspicions(res.suspicions[:top], f"connectivity suspicions (top {top})")
    for note in res.notes:
        out.print(f"[yellow]note:[/yellow] {note}")
    out.print("details: wattrail archive issues, wattrail archive suspects; "
              "apply one: wattrail archive accept METER --actor NAME")


def _phase(p: int | None) -> str:
    return "" if p is None else f" L{p + 1}"


def _print_suspicions(rows: list[dict[str, Any]], title: str) -> None:
    t = Table("rank", "meter", "kind", "recorded", "suggested", "confidence", "r rec/other",
              "balance gain", "status", title=title)
    for s in rows:
        ev = s["evidence"]
        t.add_row(str(s["rank"]), s["meter_id"], s["kind"],
                  s["recorded_transformer_id"] + _phase(s["recorded_phase"]),
                  s["suggested_transformer_id"] + _phase(s["suggested_phase"]), f"{s['confidence']:.3f}",
                  f"{ev.get('r_recorded')}/{ev.get('r_best_other')}", str(ev.get("balance_gain")),
                  s.get("status", "open"))
    out.print(t)


@app.command("suspects")
def suspects_cmd(dsn: Dsn = "",
                 check_id: Annotated[int | None, typer.Option("--check", help="check id (default: the "
                                                                             "latest)")] = None,
                 status: Annotated[str | None, typer.Option(help="open, accepted or superseded")] = None,
                 limit: Annotated[int, typer.Option(min=1)] = 50) -> None:
    """Meters whose voltages and energy say another transformer or phase, most confident first."""
    if status not in (None, "open", "accepted", "superseded"):
        raise typer.BadParameter("one of open, accepted, superseded", param_hint="'--status'")
    with connect_or_exit(dsn) as conn:
        require_schema(conn, *_TABLES)
        cid = _latest_check(conn, check_id)
        rows = conn.execute(
            "SELECT rank, meter_id, kind, recorded_transformer_id, recorded_phase, suggested_transformer_id,"
            " suggested_phase, confidence, evidence, status FROM connectivity_suspicions"
            " WHERE check_id = %s AND (%s::text IS NULL OR status = %s) ORDER BY rank LIMIT %s",
            [cid, status, status, limit]).fetchall()
    keys = ("rank", "meter_id", "kind", "recorded_transformer_id", "recorded_phase",
            "suggested_transformer_id", "suggested_phase", "confidence", "evidence", "status")
    _print_suspicions([dict(zip(keys, r, strict=True)) for r in rows], f"check {cid}")


@app.command("issues")
def issues_cmd(dsn: Dsn = "",
               check_id: Annotated[int | None, typer.Option("--check", help="check id (default: the "
                                                                           "latest)")] = None,
               kind: Annotated[str | None, typer.Option(help="only this finding kind")] = None,
               region: Annotated[str | None, typer.Option(help="only this region")] = None,
               limit: Annotated[int, typer.Option(min=1)] = 100,
               as_json: Annotated[bool, typer.Option(
                   "--json", help="one JSON object per line")] = False) -> None:
    """The completeness findings of a check, each with its evidence and the suggested fix."""
    from cloud.archive.completeness import KINDS

    if kind is not None and kind not in KINDS:
        raise typer.BadParameter(f"one of {', '.join(KINDS)}", param_hint="'--kind'")
    with connect_or_exit(dsn) as conn:
        require_schema(conn, *_TABLES)
        cid = _latest_check(conn, check_id)
        rows = conn.execute(
            "SELECT finding_no, kind, object_id, region_id, severity, evidence, fix FROM archive_findings"
            " WHERE check_id = %s AND (%s::text IS NULL OR kind = %s)"
            " AND (%s::text IS NULL OR region_id = %s)"
            " ORDER BY finding_no LIMIT %s", [cid, kind, kind, region, region, limit]).fetchall()
    if as_json:
        for r in rows:
            print(json.dumps(dict(zip(("no", "kind", "object_id", "region_id", "severity", "evidence",
                                       "fix"), r, strict=True))))
        return
    t = Table("#", "kind", "object", "region", "severity", "evidence", "fix", title=f"check {cid}")
    for no, k, obj, reg, sev, ev, fix in rows:
        t.add_row(str(no), k, obj, reg or "-", sev, json.dumps(ev), fix)
    out.print(t)


@app.command("accept")
def accept_cmd(meter_id: Annotated[str, typer.Argument(help="the suspected meter")],
               actor: Annotated[str, typer.Option(help="who accepts (logged)")],
               dsn: Dsn = "",
               check_id: Annotated[int | None, typer.Option("--check", help="the check whose suggestion "
                                                                           "to apply (default: the latest "
                                                                           "that has one)")] = None,
               comment: Annotated[str, typer.Option(help="why, e.g. the field visit's reference")] = "",
               recompute: Annotated[bool, typer.Option(help="rerun the latest loss analysis on the "
                                                            "corrected archive")] = True) -> None:
    """Apply one connectivity suggestion to the archive: logged, then the loss report rerun."""
    from cloud.archive import store

    with connect_or_exit(dsn) as conn:
        require_schema(conn, *_TABLES)
        try:
            c = store.accept(conn, meter_id, actor=actor, check_id=check_id, comment=comment,
                             recompute=recompute)
        except store.CorrectionError as exc:
            fail(str(exc))
    out.print(f"correction {c.correction_id}: {c.meter_id} {c.old['transformer_id']} phase "
              f"{c.old['phase']} -> {c.new['transformer_id']} phase {c.new['phase']}; "
              + (f"loss report rerun as analysis run {c.recompute_run_id}" if c.recompute_run_id is not None
                 else "no analysis run to rerun yet (the next one uses the correction)"))


@app.command("corrections")
def corrections_cmd(dsn: Dsn = "", limit: Annotated[int, typer.Option(min=1)] = 50) -> None:
    """The append-only log of accepted corrections, latest first."""
    with connect_or_exit(dsn) as conn:
        require_schema(conn, *_TABLES)
        rows = conn.execute("SELECT correction_id, at, actor, meter_id, check_id, old, new, comment,"
                            " recompute_run_id FROM archive_corrections ORDER BY correction_id DESC"
                            " LIMIT %s", [limit]).fetchall()
    t = Table("#", "at", "actor", "meter", "check", "from", "to", "comment", "rerun", title="corrections")
    for cid, at, actor, mid, chk, old, new, comment, run in rows:
        t.add_row(str(cid), _local(at), actor, mid, str(chk or "-"), json.dumps(old), json.dumps(new),
                  comment, str(run or "-"))
    out.print(t)
