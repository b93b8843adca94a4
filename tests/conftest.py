"""Fixtures that hand tests the *real* services: TimescaleDB and TLS Mosquitto.

Where they come from, in order:
1. `WATTRAIL_TEST_DSN` (an admin DSN, e.g. postgresql://postgres@127.0.0.1:5432/postgres) and
   `WATTRAIL_TEST_MQTT` (host:port) with `WATTRAIL_TEST_TLS_DIR` (the broker's test CA:
   ca.crt + ca.key, to issue client certificates) name services someone else started, e.g.
   `eval "$(scripts/services env)"` or the docker-compose stack.
2. Otherwise the first test that needs them starts a private instance with
   `scripts/services --state-dir <tmp> up` on free ports, and the session stops and deletes
   it at the end. Unit tests never start anything.

Each test that asks for `db_dsn` gets a database of its own, cloned from a template that already
has the TimescaleDB extension, so tests never see each other's rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis profiles, chosen by HYPOTHESIS_PROFILE (default "ci"). Both switch deadlines off:
# a deadline times each example, so on a loaded machine it fails tests that are correct.
# - "ci" (`make test`, CI): the same examples on every run, so red means a regression, never
#   an unlucky draw; no example database to carry state between runs; the too_slow health
#   check is wall-clock time too. print_blob prints the @reproduce_failure line on a failure.
# - "explore" (`make test-explore`): new random examples each run, ten times more where a test
#   does not set its own max_examples; failures are saved in .hypothesis/ and replayed first.
#   Turn what it finds into an explicit @example (README, "Tests").
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", max_examples=1000, derandomize=False, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parent.parent
SERVICES = REPO / "scripts" / "services"
TEMPLATE_DB = "wattrail_test_template"
# What the integration tests actually ran against, printed at the end of the session.
_RAN_AGAINST: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _RAN_AGAINST:
        terminalreporter.write_sep("-", "services")
        terminalreporter.write_line(
            "ran against PostgreSQL {postgresql} + TimescaleDB {timescaledb} ({license} license), "
            "Mosquitto {mosquitto}".format(**{"mosquitto": "(external)", **_RAN_AGAINST})
        )


def _record_versions(dsn_admin: str) -> None:
    import psycopg

    with psycopg.connect(dsn_admin, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version'), default_version FROM pg_available_extensions "
            "WHERE name = 'timescaledb'"
        ).fetchone()
    if row is not None:
        _RAN_AGAINST.update(postgresql=row[0].split()[0], timescaledb=row[1], license="?")


@dataclass(frozen=True)
class Services:
    dsn_admin: str  # a superuser DSN on the `postgres` database
    mqtt_host: str
    mqtt_port: int
    tls_dir: Path  # holds ca.crt and ca.key of the broker's CA
    state_dir: Path | None  # set when this session started the services itself

    @property
    def ca_cert(self) -> Path:
        return self.tls_dir / "ca.crt"

    def dsn_for(self, dbname: str) -> str:
        return self.dsn_admin.rsplit("/", 1)[0] + "/" + dbname


@dataclass(frozen=True)
class ClientCert:
    cn: str
    cert: Path
    key: Path
    ca: Path


def _services_cmd(state_dir: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(SERVICES)]
    if state_dir is not None:
        cmd += ["--state-dir", str(state_dir)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, check=False, timeout=600)


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    dsn = os.environ.get("WATTRAIL_TEST_DSN")
    mqtt = os.environ.get("WATTRAIL_TEST_MQTT")
    if dsn and mqtt:
        tls = os.environ.get("WATTRAIL_TEST_TLS_DIR")
        if not tls:
            pytest.fail("WATTRAIL_TEST_MQTT is set but WATTRAIL_TEST_TLS_DIR (ca.crt, ca.key) is not")
        host, port = mqtt.rsplit(":", 1)
        _record_versions(dsn)
        yield Services(dsn, host, int(port), Path(tls), None)
        return
    state_dir = tmp_path_factory.mktemp("services")
    res = _services_cmd(state_dir, "up", "--json")
    if res.returncode != 0:
        pytest.fail(f"could not start the services:\n{res.stderr}")
    state = json.loads(res.stdout)
    _record_versions(state["dsn_admin"])
    _RAN_AGAINST["mosquitto"] = state["versions"]["mosquitto"]
    try:
        yield Services(
            dsn_admin=state["dsn_admin"],
            mqtt_host=state["mqtt_host"],
            mqtt_port=int(state["mqtt_port"]),
            tls_dir=Path(state["tls_dir"]),
            state_dir=state_dir,
        )
    finally:
        down = _services_cmd(state_dir, "down", "--purge")
        if down.returncode != 0:
            print(down.stderr, file=sys.stderr)


@pytest.fixture(scope="session")
def template_db(services: Services) -> str:
    import psycopg

    with psycopg.connect(services.dsn_admin, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [TEMPLATE_DB]).fetchone()
        if row is None:
            conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
        else:
            return TEMPLATE_DB
    with psycopg.connect(services.dsn_for(TEMPLATE_DB), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        # the license GUC exists only in databases that loaded the extension
        lic = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
        _RAN_AGAINST["license"] = str(lic[0]) if lic and lic[0] else "?"
    # TimescaleDB's scheduler keeps a session open in every database that has the extension,
    # and CREATE DATABASE ... TEMPLATE refuses a template anyone is connected to. A database
    # that disallows connections gets no scheduler, so close it and end the one that started.
    with psycopg.connect(services.dsn_admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{TEMPLATE_DB}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            [TEMPLATE_DB],
        )
    return TEMPLATE_DB


def create_database(services: Services, template: str, prefix: str) -> str:
    """A new database cloned from `template`; returns its name. Fixtures that need a database
    for a whole module use this, and `drop_database` when done."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(services.dsn_admin, autocommit=True) as conn:
        for attempt in range(50):
            try:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                return name
            except psycopg.errors.ObjectInUse:
                # a scheduler may still be on its way out of the template (see template_db)
                if attempt == 49:
                    raise
                time.sleep(0.1)
    raise AssertionError("unreachable")  # pragma: no cover


def drop_database(services: Services, name: str) -> None:
    import psycopg

    with psycopg.connect(services.dsn_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_dsn(services: Services, template_db: str) -> Iterator[str]:
    """A DSN to a brand-new database with TimescaleDB, dropped after the test."""

    name = create_database(services, template_db, "t")
    try:
        yield services.dsn_for(name)
    finally:
        drop_database(services, name)


@pytest.fixture(scope="session")
def issue_client_cert(services: Services) -> Callable[[str], ClientCert]:
    """Issue a client certificate with the given CN from the broker's CA."""

    def issue(cn: str) -> ClientCert:
        cmd = [sys.executable, str(SERVICES), "--state-dir", str(services.tls_dir.parent),
               "issue-client", cn]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
        if res.returncode != 0:
            pytest.fail(f"issue-client {cn} failed: {res.stderr}")
        data = json.loads(res.stdout)
        return ClientCert(cn, Path(data["cert"]), Path(data["key"]), Path(data["ca"]))

    return issue


@pytest.fixture
def agent_id() -> str:
    """A fresh agent id per test, so topics never collide between tests."""
    return f"agent-{uuid.uuid4().hex[:10]}"
