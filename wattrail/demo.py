"""`make demo` / `wattrail demo`: the whole platform on a simulated grid, on loopback.

    services (TimescaleDB, TLS Mosquitto)        scripts/services, state in ~/.cache/wattrail/demo
    grid + thieves + ground truth                firmware_sim, in this process
    one edge agent per gateway (transformer)     edge.Agent, in this process, on the simulated clock
    two ingestors + transparency log             `wattrail ingest` subprocesses
    topology, agents' keys, results              TimescaleDB database `wattrail_demo`

The simulator and the agents share one simulated clock that runs in lock step: it moves to
the next 15-minute poll instant only after every agent has finished and sealed its cycle for
the current one, so the demo runs as fast as the machine allows and the same seed gives the
same readings, stored rows and findings whatever the load (`--speed` only caps the pace).
At the end the demo prints the audit status and the loss, theft and outage findings.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
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


def _services(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "services"), "--state-dir",
                           str(state_dir), *args], capture_output=True, text=True, check=False)


def start_services(state_dir: Path) -> dict[str, Any]:
    res = _services(state_dir, "up", "--json")
    if res.returncode != 0:
        raise SystemExit(f"could not start the services:\n{res.stderr}")
    return dict(json.loads(res.stdout))


def issue_tls(state_dir: Path, cn: str) -> tuple[Path, Path]:
    res = _services(state_dir, "issue-client", cn)
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


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="wattrail demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--meters", type=int, default=2000)
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--speed", type=float, default=None,
                    help="ceiling on the pace, simulated s per real s (default: no ceiling)")
    ap.add_argument("--theft-rate", type=float, default=0.10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fault-rate", type=float, default=0.02)
    ap.add_argument("--keep-running", action="store_true")
    a = ap.parse_args(argv)
    return run(DemoOptions(a.meters, a.days, a.speed, a.theft_rate, a.seed,
                           fault_rate=a.fault_rate, outage=True, keep_running=a.keep_running))


def run(opt: DemoOptions) -> int:
    from rich.console import Console

    console = Console()
    work = opt.workdir
    state_dir = CACHE / "demo-services"
    if work.exists():
        shutil.rmtree(work)
    (work / "outbox").mkdir(parents=True)
    console.rule("[bold]Wattrail demo")
    t0 = time.monotonic()
    svc = start_services(state_dir)
    v = svc["versions"]
    console.print(f"services: PostgreSQL {str(v['postgresql']).split()[0]} + TimescaleDB "
                  f"{v['timescaledb']} ({v['timescaledb_license']}), Mosquitto {v['mosquitto']}"
                  f" (mTLS) on 127.0.0.1:{svc['mqtt_port']}")
    dsn = fresh_database(svc["dsn_admin"], "wattrail_demo")
    from wattrail.demo_run import DemoRun

    demo = DemoRun(opt, svc, state_dir, dsn, console)
    try:
        demo.prepare()
        console.print(f"ready in {time.monotonic() - t0:.0f} s: {demo.summary()}")
        asyncio.run(demo.stream())
        demo.report()
        demo.analyze_and_report()
        demo.start_api()
        if not opt.keep_running:
            console.print("(the API stops with the demo: run `wattrail demo --keep-running` to "
                          "browse it)")
        if opt.keep_running:
            console.print("[bold]--keep-running[/bold]: services stay up; Ctrl-C to stop")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        console.print("interrupted: shutting down")
    finally:
        demo.shutdown()
        if not opt.keep_running:
            _services(state_dir, "down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
