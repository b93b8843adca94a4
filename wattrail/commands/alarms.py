"""`wattrail alarms list|show|ack|clear` and `wattrail alarms rules import|list`: the alarm
lifecycle from the command line (docs/alarms.md).

    wattrail alarms list [--state active]        newest first, times in local time
    wattrail alarms show 42                      one alarm, its events and their evidence
    wattrail alarms ack 42 --actor NAME --comment "crew sent"
    wattrail alarms clear 42 --actor NAME --comment "seal replaced"
    wattrail alarms rules import rules.toml --actor NAME
    wattrail alarms rules list

Exit codes: 0 done, 1 the request cannot be done (no such alarm, wrong state, bad rule file),
2 the database refused or is not migrated.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from wattrail.commands.mdm import Dsn, fail, out
from wattrail.commands.store import connect_or_exit, require_schema

app = typer.Typer(help="Alarms from the streaming rules: list, acknowledge, clear; the rules.",
                  no_args_is_help=True)
rules_app = typer.Typer(help="The alarm rules (TOML, docs/alarms.md).", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
_STATES = ("active", "acknowledged", "cleared")


def _local(t: datetime | None) -> str:
    return "-" if t is None else t.astimezone().strftime("%Y-%m-%d %H:%M %Z")


@app.command("list")
def list_cmd(dsn: Dsn = "",
             state: Annotated[str | None, typer.Option(help="active, acknowledged or cleared")] = None,
             rule: Annotated[str | None, typer.Option(help="only this rule id")] = None,
             limit: Annotated[int, typer.Option(min=1)] = 50) -> None:
    """Alarms, newest first."""
    from cloud.store import alarms_sql

    if state is not None and state not in _STATES:
        raise typer.BadParameter(f"one of {', '.join(_STATES)}", param_hint="'--state'")
    with connect_or_exit(dsn) as conn:
        require_schema(conn, "alarms")
        rows = conn.execute(alarms_sql.LIST_ALARMS, {"state": state, "rule": rule, "limit": limit}).fetchall()
    t = Table("id", "rule", "object", "region", "severity", "state", "raised", "last", "repeats",
              "message", title="alarms")
    for aid, rid, obj, reg, sev, st, raised, last, rep, msg, *_ in rows:
        t.add_row(str(aid), rid, obj, reg or "-", sev, st, _local(raised), _local(last), str(rep), msg)
    out.print(t)


@app.command("show")
def show_cmd(alarm_id: int, dsn: Dsn = "") -> None:
    """One alarm's events with their evidence: the (agent, seq) of each signed envelope, which
    `wattrail audit verify` can check offline."""
    from cloud.store import alarms_sql

    with connect_or_exit(dsn) as conn:
        require_schema(conn, "alarms")
        events = conn.execute(alarms_sql.EVENTS, [alarm_id]).fetchall()
    if not events:
        fail(f"no alarm {alarm_id}: see `wattrail alarms list`")
    t = Table("#", "action", "at", "actor", "detail", "evidence (agent, seq, meter, ts ms)",
              title=f"alarm {alarm_id}")
    for no, action, at, actor, detail, ev in events:
        t.add_row(str(no), action, _local(at), actor, detail, json.dumps(ev))
    out.print(t)


def _step(alarm_id: int, actor: str, comment: str, dsn: str, what: str) -> None:
    from cloud.alarms import store

    with connect_or_exit(dsn) as conn:
        require_schema(conn, "alarms")
        try:
            s = (store.acknowledge if what == "ack" else store.clear)(conn, alarm_id, actor, comment)
        except store.LifecycleError as exc:
            fail(str(exc))
    out.print(f"alarm {s.alarm_id} {s.state} by {actor} (event {s.event_no})")


@app.command("ack")
def ack_cmd(alarm_id: int, actor: Annotated[str, typer.Option(help="who (recorded)")],
            comment: Annotated[str, typer.Option(help="what is being done")] = "", dsn: Dsn = "") -> None:
    """Acknowledge an active alarm: someone is on it."""
    _step(alarm_id, actor, comment, dsn, "ack")


@app.command("clear")
def clear_cmd(alarm_id: int, actor: Annotated[str, typer.Option(help="who (recorded)")],
              comment: Annotated[str, typer.Option(help="why")] = "", dsn: Dsn = "") -> None:
    """Clear an alarm by hand (the data clears it by itself when the condition ends)."""
    _step(alarm_id, actor, comment, dsn, "clear")


@rules_app.command("import")
def rules_import(path: Annotated[Path, typer.Argument(help="a TOML file of [[rule]] tables")],
                 actor: Annotated[str, typer.Option(help="who (recorded with each rule)")],
                 dsn: Dsn = "") -> None:
    """Add or replace rules by id (rules not in the file stay as they are)."""
    from cloud.alarms import store
    from cloud.alarms.rules import RuleFileError, load_rules

    try:
        new = load_rules(path)
    except RuleFileError as exc:
        fail(str(exc))
    with connect_or_exit(dsn) as conn:
        require_schema(conn, "alarm_rules")
        n = store.import_rules(conn, new, actor)
    out.print(f"{n} rule(s) imported: {', '.join(r.id for r in new)}")


@rules_app.command("list")
def rules_list(dsn: Dsn = "") -> None:
    """The rules in force (the defaults while none was imported)."""
    from cloud.alarms import store

    with connect_or_exit(dsn) as conn:
        require_schema(conn, "alarm_rules")
        rs = store.rules(conn)
    t = Table("id", "kind", "severity", "enabled", "duration s", "clear after s", "scope",
              title="alarm rules")
    for r in rs:
        scope = ", ".join(x for x in (r.region and f"region {r.region}",
                                      r.customer_class and f"class {r.customer_class}") if x) or "all"
        t.add_row(r.id, r.kind, r.severity, "yes" if r.enabled else "no", str(r.duration_s),
                  str(r.clear_after_s), scope)
    out.print(t)
