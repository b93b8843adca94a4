"""`wattrail ingest` and `wattrail agents register`."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

Dsn = Annotated[str, typer.Option(envvar="WATTRAIL_DSN", help="PostgreSQL/TimescaleDB DSN")]

agents_app = typer.Typer(help="The agents and signing keys registry.", no_args_is_help=True)


@agents_app.command("register")
def register(pki_dir: Annotated[Path, typer.Option("--pki-dir", exists=True, file_okay=False,
                                                   help="the CA folder of `wattrail pki`")],
             dsn: Dsn) -> None:
    """Trust the signing keys the CA issued (checked against the CA and its CRL)."""
    import psycopg

    from cloud.ingest.registry import register_from_pki

    with psycopg.connect(dsn) as conn:
        done = register_from_pki(conn, pki_dir)
    for agent, kid in done:
        typer.echo(f"registered {agent} key {kid}")
    typer.echo(f"{len(done)} signing key(s) registered")


def ingest(
    dsn: Dsn,
    mqtt_host: Annotated[str, typer.Option(envvar="WATTRAIL_MQTT_HOST")] = "127.0.0.1",
    mqtt_port: Annotated[int, typer.Option(envvar="WATTRAIL_MQTT_PORT")] = 8883,
    ca: Annotated[Path, typer.Option(envvar="WATTRAIL_MQTT_CA", exists=True)] = Path("ca.crt"),
    cert: Annotated[Path, typer.Option(envvar="WATTRAIL_INGESTOR_CERT", exists=True,
                                       help="client certificate, CN=wattrail-ingestor")
                    ] = Path("ingestor.crt"),
    key: Annotated[Path, typer.Option(envvar="WATTRAIL_INGESTOR_KEY", exists=True)
                   ] = Path("ingestor.key"),
    share_group: Annotated[str, typer.Option(help="shared-subscription group")] = "ingest",
    max_batch: Annotated[int, typer.Option(help="messages per transaction at most")] = 500,
    max_wait: Annotated[float, typer.Option(help="seconds to wait to fill a batch")] = 0.2,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    log_key: Annotated[Path | None, typer.Option(
        envvar="WATTRAIL_LOG_KEY", exists=True,
        help="transparency-log signing key (`wattrail pki init-log-key`): also run the log "
             "sequencer and sign tree heads")] = None,
    sth_every: Annotated[float, typer.Option(help="seconds between signed tree heads")] = 10.0,
    metrics_port: Annotated[int | None, typer.Option(
        help="serve Prometheus metrics (/metrics) and the health check (/healthz) on this "
             "port (127.0.0.1)")] = None,
    earliest: Annotated[dt.datetime, typer.Option(
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
        help="readings and sent-at times before this UTC instant are quarantined "
             "(implausible_time)")] = dt.datetime(2000, 1, 1),
    max_ahead: Annotated[float, typer.Option(
        min=0, max=366 * 86400,
        help="seconds past the receipt a timestamp may lie before it is quarantined "
             "(implausible_time)")] = 86400.0,
    stale_after: Annotated[float, typer.Option(
        min=1, help="/healthz fails when the ingest worker has not looped for this many "
                    "seconds")] = 60.0,
    quarantine_budget: Annotated[int, typer.Option(
        min=0, help="bytes of quarantined messages kept whole per agent; past it only a 4 KiB "
                    "prefix, the SHA-256 and the size are kept (and counted, and logged)")
    ] = 64 * 1024 * 1024,
) -> None:
    """Run an ingestor: verify envelopes, store them in TimescaleDB, quarantine the rest, and
    acknowledge only what is committed. Run several to share the load."""
    from cloud.ingest.config import IngestConfig
    from cloud.ingest.limits import Limits
    from cloud.ingest.metrics import IngestStats
    from cloud.ingest.service import run_forever

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        limits = Limits(int(earliest.replace(tzinfo=dt.UTC).timestamp() * 1000),
                        int(max_ahead * 1000))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--earliest") from exc
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if duration is not None:
        threading.Timer(duration, stop.set).start()

    def status(s: IngestStats) -> None:
        q = ", ".join(f"{k} {v}" for k, v in sorted(s.quarantined.items())) or "none"
        logging.getLogger("wattrail.ingest").info(
            "received %d, stored %d envelopes / %d readings, duplicates %d, quarantined: %s, "
            "db retries %d", s.received, s.stored, s.readings, s.duplicates, q, s.db_retries)

    run_forever(IngestConfig(dsn, mqtt_host, mqtt_port, ca, cert, key, share_group=share_group,
                             max_batch=max_batch, max_wait_s=max_wait, log_key=log_key,
                             sth_every_s=sth_every, limits=limits, metrics_port=metrics_port,
                             stale_after_s=stale_after,
                             quarantine_budget_bytes=quarantine_budget),
                status=status, stop=stop)
