"""`make demo` / `wattrail demo`: run the platform on a simulated grid.

For now (issue [1/8]) it checks that the services `make services-up` started are running and
prints what is where; later issues grow it into the full pipeline demo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def describe_services(state_dir: Path | None = None) -> dict[str, object]:
    cmd = [sys.executable, str(REPO / "scripts" / "services")]
    if state_dir is not None:
        cmd += ["--state-dir", str(state_dir)]
    res = subprocess.run([*cmd, "up", "--json"], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"services are not available:\n{res.stderr}")
    return dict(json.loads(res.stdout))


def main() -> int:
    from rich.console import Console
    from rich.table import Table

    state = describe_services(Path(os.environ["WATTRAIL_STATE_DIR"]) if "WATTRAIL_STATE_DIR" in
                              os.environ else None)
    versions = state["versions"]
    assert isinstance(versions, dict)
    table = Table(title="Wattrail services (loopback only)")
    table.add_column("service")
    table.add_column("version")
    table.add_column("where")
    table.add_row("TimescaleDB", f"{versions['timescaledb']} ({versions['timescaledb_license']}) on "
                  f"PostgreSQL {str(versions['postgresql']).split()[0]}", str(state["dsn"]))
    table.add_row("Mosquitto (mTLS, ACL)", str(versions["mosquitto"]),
                  f"mqtts://{state['mqtt_host']}:{state['mqtt_port']}  CA {state['ca_cert']}")
    console = Console()
    console.print(table)
    console.print(
        "The simulated grid, edge agents, ingestors, analytics and API join this demo as their "
        "issues land. Stop the services with [bold]make services-down[/bold]; "
        "`eval \"$(.venv/bin/python scripts/services env)\"` exports their addresses."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
