"""scripts/services itself: idempotent `up`, `env` exports, and `down` leaves nothing running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def _run(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts/services"), "--state-dir", str(state),
                           *args], capture_output=True, text=True, check=False, timeout=600)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return ") Z " not in stat  # a zombie waiting for init is not running


def _postmaster_pid(state: dict[str, object]) -> int:
    with psycopg.connect(str(state["dsn"])) as conn:
        row = conn.execute("SELECT pg_postmaster_start_time(), pg_backend_pid()").fetchone()
        assert row is not None
        ppid = Path(f"/proc/{row[1]}/stat").read_text().rsplit(")", 1)[1].split()[1]
    return int(ppid)


def test_up_is_idempotent_and_down_stops_everything(tmp_path: Path) -> None:
    state_dir = tmp_path / "svc"
    assert _run(state_dir, "status").returncode == 3
    first = _run(state_dir, "up", "--json")
    assert first.returncode == 0, first.stderr
    state = json.loads(first.stdout)
    try:
        assert state["versions"]["timescaledb"].startswith("2.")
        assert state["versions"]["mosquitto"].startswith("2.")
        again = _run(state_dir, "up", "--json")
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stderr
        assert json.loads(again.stdout)["pg_port"] == state["pg_port"]

        env = _run(state_dir, "env")
        assert env.returncode == 0
        assert f"export WATTRAIL_DSN='{state['dsn']}'" in env.stdout.splitlines()
        assert _run(state_dir, "status").returncode == 0

        pids = [_postmaster_pid(state), int(state["mosquitto_pid"])]
        assert all(_alive(p) for p in pids)
    finally:
        down = _run(state_dir, "down", "--purge")
    assert down.returncode == 0, down.stderr
    assert not any(_alive(p) for p in pids), "down left a process of ours running"
    assert _run(state_dir, "status").returncode == 3
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(str(state["dsn"]), connect_timeout=2)


def test_env_without_services_is_a_clear_error(tmp_path: Path) -> None:
    res = _run(tmp_path / "nothing", "env")
    assert res.returncode == 2
    assert "not running" in res.stderr
    assert "scripts/services up" in res.stderr
