"""Apply the SQL files in cloud/store/migrations/ in version order, each at most once.

Rules:
- A file is `NNNN_name.sql`; `NNNN_name.tsl.sql` needs the Timescale-licensed build and is
  skipped (logged, not recorded) on the Apache build, so it applies if the license changes.
- `schema_migrations` records version, name, the file's sha256 and when it was applied. An
  applied file whose bytes changed is an error: the database no longer matches the repo, and
  only a person can say which is right.
- Everything runs in one transaction holding an advisory lock: two processes migrating at once
  serialise, and the second finds nothing left to do. A failing file rolls back all of the run.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from cloud.store.errors import ChecksumMismatchError, MigrationError
from cloud.store.features import detect_features

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# pg_advisory_xact_lock key: any constant unique to this job ("wattrail" as ASCII hex)
_LOCK_KEY = 0x77617474726169
_FILE_RE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+?)(?P<tsl>\.tsl)?\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sha256: str
    needs_license: bool
    path: Path

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations on disk, sorted; a stray or duplicate-numbered file is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _FILE_RE.match(path.name)
        if m is None:
            raise MigrationError(0, f"{path.name}: not a migration file name; use NNNN_name.sql "
                                    "(or NNNN_name.tsl.sql for Timescale-license-only steps)")
        version = int(m["version"])
        if version in found:
            raise MigrationError(version, f"two migrations numbered {version:04d}: "
                                          f"{found[version].path.name} and {path.name}")
        found[version] = Migration(version, m["name"], hashlib.sha256(path.read_bytes()).hexdigest(),
                                   m["tsl"] is not None, path)
    return [found[v] for v in sorted(found)]


def migrate(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Bring the schema up to date; return the migrations applied by this call (maybe none)."""
    migrations = discover(directory)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {int(v): (str(n), str(s)) for v, n, s in
                   conn.execute("SELECT version, name, sha256 FROM schema_migrations")}
        on_disk = {m.version for m in migrations}
        unknown = sorted(set(applied) - on_disk)
        if unknown:
            raise MigrationError(unknown[0], f"the database has migration(s) {unknown} that this code "
                                             "does not know: it was migrated by a newer Wattrail")
        features = detect_features(conn)
        done: list[Migration] = []
        for mig in migrations:
            if mig.version in applied:
                name, recorded = applied[mig.version]
                if recorded != mig.sha256:
                    raise ChecksumMismatchError(mig.version, name, recorded, mig.sha256)
                continue
            if mig.needs_license and not features.licensed:
                log.info("skipping migration %04d_%s: needs the Timescale license, server has %s",
                         mig.version, mig.name, features.license)
                continue
            log.info("applying migration %04d_%s", mig.version, mig.name)
            try:
                conn.execute(mig.sql().encode())  # bytes: no client-side %-placeholder parsing
            except psycopg.Error as exc:
                raise MigrationError(mig.version, f"migration {mig.path.name} failed: {exc}") from exc
            conn.execute("INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                         [mig.version, mig.name, mig.sha256])
            done.append(mig)
    return done
