"""Setting the demo up: its options, the services it starts, a fresh database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("WATTRAIL_CACHE_DIR", Path.home() / ".cache" / "wattrail"))
POLL_S = 900  # simulated seconds between polls


@dataclass
class DemoOptions:
    meters: int = 2000
    days: float = 2.0
    speed: float | None = None  # ceiling on simulated s per real s; None: as fast as it goes
    theft_rate: float = 0.10
    seed: int = 1
    ingestors: int = 2
    fault_rate: float = 0.02
    keep_running: bool = False
    workdir: Path = CACHE / "demo"
    # Known scenarios instead of the seeded random plan (tests): (customer index, kind, params),
    # e.g. (3, "bypass", {}) or (10, "h1", {"a": 0.3}),
    # each active from `thefts_from_h` simulated hours after the start to the end of the run
    thefts: tuple[tuple[int, str, dict[str, float]], ...] | None = None
    thefts_from_h: float = 0.0
    outage: bool = False  # one transformer dark for a simulated hour (the CLI turns it on)
    # real seconds an agent waits for a reply; the lock-step clock does not move meanwhile, so
    # it can be generous: a loaded machine must not turn a slow reply into a lost reading
    modbus_timeout_s: float = 2.0


def services(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "services"), "--state-dir",
                           str(state_dir), *args], capture_output=True, text=True, check=False)


def start_services(state_dir: Path) -> dict[str, Any]:
    res = services(state_dir, "up", "--json")
    if res.returncode != 0:
        raise SystemExit(f"could not start the services:\n{res.stderr}")
    return dict(json.loads(res.stdout))


def issue_tls(state_dir: Path, cn: str) -> tuple[Path, Path]:
    res = services(state_dir, "issue-client", cn)
    if res.returncode != 0:
        raise SystemExit(f"issue-client {cn}: {res.stderr}")
    d = json.loads(res.stdout)
    return Path(d["cert"]), Path(d["key"])


def fresh_database(dsn_admin: str, name: str) -> str:
    import psycopg

    from cloud.store.migrate import migrate

    with psycopg.connect(dsn_admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = dsn_admin.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.commit()
        migrate(conn)
    return dsn


