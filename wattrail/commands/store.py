"""`wattrail db|topology|readings ...`: the store's commands. wattrail/cli.py mounts them with
`wattrail.commands.store.mount(app)`. Exit codes: 0 done, 1 the input file is invalid (the first 20
problems and the count are printed), 2 the database refused (connection, migration, or an
import it could not finish: nothing of that file was stored) or a bad option."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from cloud.store.errors import MigrationError, ValidationError
from cloud.store.features import MissingExtensionError
from cloud.store.readings_import.limits import DEFAULT_NOT_BEFORE, TimeWindow
from cloud.store.topology import grid_notes

SHOW_PROBLEMS = 20
err = Console(stderr=True)
out = Console()

Dsn = Annotated[str, typer.Option(envvar="WATTRAIL_DSN", show_envvar=True,
                                  help="PostgreSQL DSN of the Wattrail database")]
db_app = typer.Typer(help="Database schema and rollups.", no_args_is_help=True)
topology_app = typer.Typer(help="The grid / customer archive.", no_args_is_help=True)
readings_app = typer.Typer(help="Historical readings.", no_args_is_help=True)


def mount(app: typer.Typer) -> None:
    """Add `db`, `topology` and `readings` to the wattrail command line."""
    app.add_typer(db_app, name="db")
    app.add_typer(topology_app, name="topology")
    app.add_typer(readings_app, name="readings")


SERVER_HINT = "Check --dsn / WATTRAIL_DSN and that the server runs (scripts/services status)."


def connect_or_exit(dsn: str, hint: str = SERVER_HINT) -> psycopg.Connection[Any]:
    """An autocommit connection for a CLI command, or a one-line error and exit status 2
    (every `wattrail` command that needs the database says it the same way)."""
    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        err.print(f"[red]cannot connect to the database:[/red] {exc}".rstrip() + "\n" + hint)
        raise typer.Exit(2) from exc



def require_schema(conn: psycopg.Connection[Any], *tables: str) -> None:
    """Exit 2 with the fix when the database lacks a table the command needs (an unmigrated
    database would otherwise end in a raw UndefinedTable traceback)."""
    missing = [t for t in tables
               if conn.execute("SELECT to_regclass(%s)", [t]).fetchone() in (None, (None,))]
    if missing:
        err.print(f"[red]the database is not migrated (no {', '.join(missing)}):[/red] "
                  "run `wattrail db migrate` first")
        raise typer.Exit(2)


def _fail_validation(exc: ValidationError) -> None:
    err.print(f"[red]{escape(exc.path)}: {exc.total} problem(s), nothing was imported[/red]")
    for p in exc.problems[:SHOW_PROBLEMS]:
        err.print(f"  {p}", markup=False, highlight=False)  # the file's text, not markup
    if exc.total > SHOW_PROBLEMS:
        err.print(f"  ... and {exc.total - SHOW_PROBLEMS} more")
    raise typer.Exit(1)


@db_app.command("migrate")
def migrate_cmd(dsn: Dsn) -> None:
    """Apply pending schema migrations (safe to run again, and from several hosts at once)."""
    from cloud.store.migrate import migrate

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with connect_or_exit(dsn) as conn:
        try:
            done = migrate(conn)
        except (MigrationError, MissingExtensionError) as exc:
            err.print(f"[red]migration failed:[/red] {exc}")
            raise typer.Exit(2) from exc
    out.print(f"applied {len(done)} migration(s)" + "".join(f"\n  {m.version:04d}_{m.name}" for m in done))


@db_app.command("retention")
def retention_cmd(dsn: Dsn, keep_days: Annotated[int, typer.Option(
        min=1, help="keep raw readings this many days; older whole chunks are dropped")]) -> None:
    """Drop raw readings older than --keep-days (drop_chunks). Envelopes (the evidence) and
    rollups are kept."""
    from cloud.store.retention import drop_old_readings

    with connect_or_exit(dsn) as conn:
        require_schema(conn, "readings")
        dropped = drop_old_readings(conn, keep_days)
    out.print(f"dropped {len(dropped)} chunk(s) of raw readings older than {keep_days} days")


@db_app.command("refresh")
def refresh_cmd(dsn: Dsn,
                start: Annotated[datetime, typer.Option(help="UTC start, e.g. 2024-01-01")],
                end: Annotated[datetime, typer.Option(help="UTC end (exclusive)")]) -> None:
    """Recompute the 15-min, hourly and daily rollups for a time range."""
    from cloud.store.rollups import refresh_rollups

    with connect_or_exit(dsn) as conn:
        require_schema(conn, "readings", "readings_15m")
        written = refresh_rollups(conn, start.replace(tzinfo=start.tzinfo or UTC),
                                  end.replace(tzinfo=end.tzinfo or UTC))
    out.print(", ".join(f"{t}: {n} rows" for t, n in written.items()))


@topology_app.command("import")
def topology_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)], dsn: Dsn,
    max_bytes: Annotated[int, typer.Option(
        min=1, help="refuse files larger than this many bytes (default 256 MiB)")] = 256 * 1024 * 1024,
    currency: Annotated[str | None, typer.Option(
        help="ISO 4217 code of the tariffs in an MDM CSV (default EUR; a JSON file says it)")] = None,
) -> None:
    """Import or update the grid from a grid file (docs/grid-file.md): the JSON grid file, or
    an MDM export as CSV (*.csv: one row per customer meter, no Modbus addressing needed)."""
    from cloud.store.grid_file import load_grid
    from cloud.store.topology import write_grid_doc

    try:  # the file is checked whole first: its problems are worth knowing without a database
        doc = load_grid(file, max_bytes=max_bytes, currency=currency)
    except ValidationError as exc:
        _fail_validation(exc)
    with connect_or_exit(dsn) as conn:
        require_schema(conn, "customers", "transformers")
        counts = write_grid_doc(conn, doc)
    out.print("imported " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    for note in grid_notes(doc):
        out.print(f"[yellow]note:[/yellow] {note}")


_NOT_BEFORE = DEFAULT_NOT_BEFORE.replace(tzinfo=None)  # typer shows and parses naive datetimes


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=t.tzinfo or UTC)


def _cli_time(t: datetime) -> str:
    """A UTC time as `wattrail db refresh --start/--end` parse it (typer takes no 'Z')."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


@readings_app.command("import")
def readings_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)], dsn: Dsn,
    refresh: Annotated[bool, typer.Option(
        help="refresh the rollups for the imported span, in the same transaction")] = True,
    not_before: Annotated[datetime, typer.Option(
        help="UTC; an interval that starts earlier is an error")] = _NOT_BEFORE,
    not_after: Annotated[datetime | None, typer.Option(
        help="UTC; an interval that ends later is an error (default: now + 1 day)")] = None,
) -> None:
    """Import historical interval readings from a CSV (docs/historical-import.md)."""
    from cloud.store.readings_import.load import import_readings_csv

    try:
        window = TimeWindow.default(not_before=_utc(not_before),
                                    not_after=None if not_after is None else _utc(not_after))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--not-before / --not-after") from exc
    with connect_or_exit(dsn) as conn, Progress(TextColumn("{task.description}"), BarColumn(),
                                         TextColumn("{task.completed:,}/{task.total:,}"),
                                         TimeElapsedColumn(), console=err) as bar:
        require_schema(conn, "readings", "import_batches")
        tasks: dict[str, TaskID] = {}

        def progress(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        try:
            res = import_readings_csv(conn, file, progress=progress, window=window, refresh=refresh)
        except ValidationError as exc:
            bar.stop()
            _fail_validation(exc)
        except psycopg.Error as exc:  # the import and its rollups are one transaction
            bar.stop()
            err.print(f"[red]{file}: the database refused, nothing was imported:[/red] "
                      f"{type(exc).__name__}: {exc}".rstrip())
            raise typer.Exit(2) from exc
    refresh_hint = "" if res.first_ts is None or res.last_ts is None else (
        f"wattrail db refresh --start {_cli_time(res.first_ts)} --end {_cli_time(res.last_ts)}")
    if res.already_imported:
        out.print(f"{file} was already imported (batch {res.batch_id}); nothing changed" + (
            f". If it was imported with --no-refresh, build its rollups with: {refresh_hint}"
            if refresh_hint else ""))
        return
    out.print(f"batch {res.batch_id}: {res.rows:,} rows -> {res.inserted:,} readings ({res.path} COPY)")
    if res.rollups is not None:
        out.print("rollups: " + ", ".join(f"{t}: {n} rows" for t, n in res.rollups.items()))
    elif refresh_hint:
        out.print(f"rollups not refreshed (--no-refresh); build them with: {refresh_hint}")
