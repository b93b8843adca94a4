"""Which TimescaleDB features this server offers.

The Apache-licensed build (Debian's package) has hypertables, time_bucket and drop_chunks; the
Timescale-licensed build adds compression, continuous aggregates and policy jobs. We ask the
server (`timescaledb.license`) instead of trying a feature and catching the error, so the choice
is logged once and the same answer drives the migrations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Features:
    timescaledb_version: str
    license: str  # 'apache' or 'timescale'

    @property
    def licensed(self) -> bool:
        """Compression, continuous aggregates and policies are available."""
        return self.license == "timescale"


class MissingExtensionError(RuntimeError):
    """The database has no timescaledb extension and we could not create it."""


def detect_features(conn: psycopg.Connection) -> Features:
    """The server's TimescaleDB version and license; creates the extension in this database
    when the server has it and we may (`db migrate` on a fresh database), else says how."""
    query = ("SELECT extversion, current_setting('timescaledb.license', true) "
             "FROM pg_extension WHERE extname = 'timescaledb'")
    row = conn.execute(query).fetchone()
    if row is None:
        try:
            with conn.transaction():  # a savepoint: a refusal leaves the outer transaction usable
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            log.info("created the timescaledb extension in this database")
        except psycopg.Error as exc:
            raise MissingExtensionError(
                "the timescaledb extension is not installed in this database and could not be "
                f"created ({type(exc).__name__}: {str(exc).strip().splitlines()[0]}). As a superuser, "
                "with timescaledb in shared_preload_libraries (postgresql.conf), run "
                "`CREATE EXTENSION timescaledb;` in this database, then `wattrail db migrate` again"
            ) from exc
        row = conn.execute(query).fetchone()
        assert row is not None
    version, lic = str(row[0]), str(row[1] or "apache")
    features = Features(version, lic)
    log.info("TimescaleDB %s, %s license: compression and continuous aggregates %s",
             version, lic, "enabled" if features.licensed else "not available (Apache build)")
    return features
