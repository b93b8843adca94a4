"""`wattrail edge`: the group keeps the old `edge --config X` spelling; `status` reads the
outbox file and says when the live metrics are not there."""

from __future__ import annotations

import socket
from pathlib import Path

from typer.testing import CliRunner

from edge.outbox import Outbox
from wattrail.cli import app

CONFIG = """
agent_id = "tx-0001"
signing_key = "signing.key"
outbox = "state/outbox.db"
health_port = {port}
[broker]
ca = "ca.crt"
cert = "tls.crt"
key = "tls.key"
[[meters]]
id = "M1"
map = "sdm630"
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when we return: nobody answers there


def test_edge_without_config_or_subcommand_prints_help() -> None:
    res = CliRunner().invoke(app, ["edge"])
    assert res.exit_code == 2
    assert "status" in res.output and "run" in res.output


def test_status_reports_the_outbox_and_missing_live_metrics(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(CONFIG.format(port=_closed_port()))
    res = CliRunner().invoke(app, ["edge", "status", "--config", str(cfg)])
    assert res.exit_code == 1, res.output
    assert "no outbox at" in res.output
    with Outbox(tmp_path / "state" / "outbox.db") as ob:
        for seq in (1, 2, 3, 4):
            ob.append(seq, b"e", created_ms=seq)
        ob.confirm(2, ob.envelope_hash(2) or b"")
    res = CliRunner().invoke(app, ["edge", "status", "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "depth 2" in res.output and "head seq 4" in res.output
    assert "confirmed seq 2" in res.output and "unconfirmed 2" in res.output
    assert "live metrics: not available" in res.output
    res = CliRunner().invoke(app, ["edge", "status", "--config", str(cfg), "--json"])
    assert '"depth": 2' in res.output and '"live": null' in res.output
