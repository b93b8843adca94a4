"""`wattrail api` and `wattrail token create|list|revoke`. wattrail/cli.py mounts them with
`wattrail.commands.api.mount(app)`. Exit codes: 0 done, 1 bad input (unknown role, no such token),
2 the database refused."""

from __future__ import annotations

from typing import Annotated

import psycopg
import typer
from rich.console import Console

from wattrail.commands.store import connect_or_exit

Dsn = Annotated[str, typer.Option(envvar="WATTRAIL_DSN", show_envvar=True,
                                  help="PostgreSQL DSN of the Wattrail database")]
token_app = typer.Typer(help="API tokens (bearer tokens with a role).", no_args_is_help=True)
err = Console(stderr=True)
out = Console()


def mount(app: typer.Typer) -> None:
    """Add `api` and `token` to the wattrail command line."""
    app.command("api")(serve)
    app.add_typer(token_app, name="token")


def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="processes (each has its own rate-limit buckets)")] = 1,
) -> None:
    """Serve the query API (settings from WATTRAIL_DSN and WATTRAIL_API_* variables)."""
    import uvicorn

    uvicorn.run("cloud.api.main:create_app", factory=True, host=host, port=port, workers=workers,
                proxy_headers=True, log_level="info")


def _connect(dsn: str) -> psycopg.Connection:
    return connect_or_exit(dsn, "Check --dsn / WATTRAIL_DSN and that `wattrail db migrate` ran.")


@token_app.command("create")
def create_cmd(dsn: Dsn,
               role: Annotated[str, typer.Option(help="engineer, auditor or admin")],
               name: Annotated[str, typer.Option(help="who or what will use the token")],
               expires_in_days: Annotated[float | None, typer.Option(
                   "--expires-in-days", help="the token stops working this many days from "
                   "now (default: never)")] = None) -> None:
    """Create a token and print it once (only its SHA-256 is stored)."""
    from cloud.api.tokens import TokenError, create_token

    with _connect(dsn) as conn:
        try:
            new = create_token(conn, role, name, expires_in_days)
        except TokenError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
    err.print(f"token {new.info.id} ({new.info.role.value}, {new.info.name!r}); store it now, "
              "it is not shown again:")
    typer.echo(new.secret)  # alone on stdout, so `TOKEN=$(wattrail token create ...)` works


@token_app.command("list")
def list_cmd(dsn: Dsn) -> None:
    """List tokens (never their secrets)."""
    from cloud.api.tokens import list_tokens

    with _connect(dsn) as conn:
        for t in list_tokens(conn):
            state = (f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at
                     else f"expires {t.expires_at.astimezone():%Y-%m-%d %H:%M}" if t.expires_at
                     else "active")
            out.print(f"{t.id:>5}  {t.role.value:<9} {state:<24} {t.name}")


@token_app.command("revoke")
def revoke_cmd(dsn: Dsn, token_id: Annotated[int, typer.Argument(help="the id `token list` shows")]) -> None:
    """Revoke a token; it stops working at the next request."""
    from cloud.api.tokens import TokenError, revoke_token

    with _connect(dsn) as conn:
        try:
            t = revoke_token(conn, token_id)
        except TokenError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
    out.print(f"token {t.id} ({t.name!r}) revoked at {t.revoked_at:%Y-%m-%d %H:%M:%S %Z}")
