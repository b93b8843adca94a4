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


def detect_features(conn: psycopg.Connection) -> Features:
    row = conn.execute(
        "SELECT extversion, current_setting('timescaledb.license', true) "
        "FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    if row is None:
        raise RuntimeError(
            "the timescaledb extension is not installed in this database: run "
            "CREATE EXTENSION timescaledb (as a superuser) and migrate again"
        )
    version, lic = str(row[0]), str(row[1] or "apache")
    features = Features(version, lic)
    log.info("TimescaleDB %s, %s license: compression and continuous aggregates %s",
             version, lic, "enabled" if features.licensed else "not available (Apache build)")
    return features
