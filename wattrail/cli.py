"""The `wattrail` command line. Each subcommand lives with the part it drives; this module
only wires them together, so `wattrail --help` lists exactly what exists."""

from __future__ import annotations

import typer

from wattrail import __version__
from wattrail.commands.alarms import app as alarms_app
from wattrail.commands.analytics import mount as mount_analytics
from wattrail.commands.api import mount as mount_api
from wattrail.commands.archive import app as archive_app
from wattrail.commands.audit import app as audit_app
from wattrail.commands.billing import app as billing_app
from wattrail.commands.chaos import mount as mount_chaos
from wattrail.commands.demo import demo
from wattrail.commands.deploy import app as deploy_app
from wattrail.commands.edge import app as edge_app
from wattrail.commands.ingest import agents_app, ingest
from wattrail.commands.mdm import mount as mount_mdm
from wattrail.commands.meter import app as meter_app
from wattrail.commands.pki import app as pki_app
from wattrail.commands.sim import sim
from wattrail.commands.store import mount as mount_store

app = typer.Typer(
    name="wattrail",
    help="Wattrail: signed smart-meter readings from the field into TimescaleDB, "
    "loss reports and theft suspects.",
    no_args_is_help=True,
    add_completion=False,
)

app.add_typer(meter_app, name="meter")
app.add_typer(pki_app, name="pki")
app.add_typer(edge_app, name="edge")  # edge run|status; `edge --config X` still runs
app.command()(sim)
app.command()(ingest)
app.add_typer(agents_app, name="agents")
mount_store(app)  # db migrate|refresh, topology import, readings import
mount_api(app)  # api, token create|list|revoke
mount_analytics(app)  # analyze, evaluate
mount_mdm(app)  # vee run|status, tariffs import|list, topology time-zone
app.add_typer(billing_app, name="billing")  # billing determinants|export|revenue
app.add_typer(alarms_app, name="alarms")  # alarms list|show|ack|clear, alarms rules import|list
app.add_typer(archive_app, name="archive")  # archive check|issues|suspects|accept|corrections
app.command()(demo)
app.add_typer(audit_app, name="audit")
app.add_typer(deploy_app, name="deploy")  # deploy init: the compose stack's bootstrap
mount_chaos(app)  # chaos run [SCENARIO] [--scale small|full]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wattrail {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Wattrail command line."""


@app.command()
def version() -> None:
    """Print the version of Wattrail and of the libraries it depends on."""
    import importlib.metadata as md

    typer.echo(f"wattrail {__version__}")
    for dist in ("pymodbus", "paho-mqtt", "psycopg", "numba", "fastapi", "cryptography"):
        try:
            typer.echo(f"  {dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            typer.echo(f"  {dist} (not installed)")


if __name__ == "__main__":
    app()
