"""The campaign's private services instance: a TimescaleDB and a TLS Mosquitto started by
scripts/services in their own state directory, killable and restartable at will, with the
`wattrail ingest` processes the scenarios start and kill, and the waits they use."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from security.keyring import KeyCertificate

REPO = Path(__file__).resolve().parents[2]
SERVICES = REPO / "scripts" / "services"


# -- the private services instance -------------------------------------------------------------
class Services:
    """A private TimescaleDB + TLS Mosquitto (scripts/services --state-dir), killable at will."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        out = self._svc("up", "--json")
        self.state: dict[str, Any] = json.loads(out)
        self.host = str(self.state["mqtt_host"])
        self.port = int(self.state["mqtt_port"])
        self.ca = Path(self.state["ca_cert"])
        self.logs = self.state_dir / "chaos-logs"
        self.logs.mkdir(exist_ok=True)
        self._ingest_logs: dict[int, Path] = {}

    def _svc(self, *args: str) -> str:
        res = subprocess.run([sys.executable, str(SERVICES), "--state-dir", str(self.state_dir),
                              *args], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"scripts/services {' '.join(args)} failed: {res.stderr[-2000:]}")
        return res.stdout

    def down(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._svc("down", "--purge")

    def issue(self, cn: str) -> tuple[Path, Path]:
        d = json.loads(self._svc("issue-client", cn))
        return Path(d["cert"]), Path(d["key"])

    def new_db(self, agents: list[KeyCertificate]) -> str:
        from cloud.ingest.writer import register_key
        from cloud.store.migrate import migrate

        name = f"chaos_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.state["dsn_admin"], autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        dsn = str(self.state["dsn_admin"]).rsplit("/", 1)[0] + "/" + name
        with psycopg.connect(dsn) as c:
            c.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            c.commit()
            migrate(c)
            with c.transaction():
                for cert in agents:
                    register_key(c, cert)
        return dsn

    def ingestor(self, dsn: str, group: str, *, max_batch: int = 64,
                 crash: tuple[str, int] | None = None, **env: str) -> subprocess.Popen[bytes]:
        """A `wattrail ingest` process; `crash=(point, n)` makes it die at that point of its
        n-th batch (wattrail/chaos/crashing_ingest.py: "mid-batch" exits 71, "after-commit" 70)."""
        cert, key = self.issue("wattrail-ingestor")
        e = dict(os.environ, WATTRAIL_DSN=dsn, WATTRAIL_MQTT_HOST=self.host,
                 WATTRAIL_MQTT_PORT=str(self.port), WATTRAIL_MQTT_CA=str(self.ca),
                 WATTRAIL_INGESTOR_CERT=str(cert), WATTRAIL_INGESTOR_KEY=str(key), **env)
        path = self.logs / f"ingest-{group}-{uuid.uuid4().hex[:4]}.log"
        cmd = (["wattrail.cli", "ingest"] if crash is None
               else ["wattrail.chaos.crashing_ingest", crash[0], str(crash[1]), "--"])
        with open(path, "wb") as log:
            p = subprocess.Popen([sys.executable, "-m", *cmd,
                                  "--share-group", group, "--max-batch", str(max_batch),
                                  "--max-wait", "0.05"], env=e, cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=log)
        self._ingest_logs[p.pid] = path
        return p

    def wait_subscribed(self, p: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
        """Until the ingestor logged its shared subscription: a publisher that does not resend
        (unlike the edge Publisher) would otherwise lose what it sent before that."""
        path = self._ingest_logs[p.pid]
        wait_until(lambda: b"subscribed" in path.read_bytes() or p.poll() is not None, timeout, 0.05)
        # one that subscribed and then exited as planned (a chaos crash) did subscribe
        if b"subscribed" not in path.read_bytes():
            raise RuntimeError(f"ingestor not subscribed: {path.read_text()[-2000:]}")

    # PostgreSQL -----------------------------------------------------------------------------
    def restart_db(self, *, immediate: bool = True, down_for: float = 0.0) -> None:
        args = ["restart-db", "--down-for", f"{down_for:.2f}"]
        self._svc(*args, *(["--immediate"] if immediate else []))

    def small_disk(self, size_mb: int) -> tuple[str, Path]:
        """Mount a tmpfs of `size_mb` the server can use for a tablespace: (its path as the
        server sees it, its path here)."""
        d = json.loads(self._svc("small-disk", "--size-mb", str(size_mb)))
        return str(d["server_path"]), Path(d["host_path"])

    def mkdir_for_postgres(self, server_path: str) -> None:
        """Create an empty folder owned by postgres at `server_path` (a tablespace location)."""
        with psycopg.connect(self.state["dsn_admin"], autocommit=True) as c:
            # the server creates it itself: it runs as the right user inside the right root
            c.execute(f"COPY (SELECT 1) TO PROGRAM 'mkdir -p {server_path}'")

    # Mosquitto ------------------------------------------------------------------------------
    @property
    def broker_pid(self) -> int | None:
        try:
            return int((self.state_dir / "mosquitto" / "mosquitto.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill_broker(self) -> None:
        pid = self.broker_pid
        if pid is None:
            raise RuntimeError("no mosquitto.pid in the state dir")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}").exists() else ""
            if ") Z " in stat:
                break
            time.sleep(0.02)

    def start_broker(self, timeout: float = 10.0) -> None:
        conf = self.state_dir / "mosquitto" / "mosquitto.conf"
        deadline = time.monotonic() + timeout
        while True:  # the killed one's listening socket may linger a moment
            subprocess.run(["mosquitto", "-c", str(conf), "-d"], capture_output=True, check=False)
            if wait_port(self.host, self.port, 2.0):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("Mosquitto did not come back")


def wait_port(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def stop_procs(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def drained(outboxes: list[Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(ob.depth == 0 for ob in outboxes):
            return True
        time.sleep(0.05)
    return False


def wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
