from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.config import load_config

BASE = """
agent_id = "tx-0001"
signing_key = "keys/signing.pem"
outbox = "state/outbox.db"
[broker]
host = "127.0.0.1"
port = 8883
ca = "tls/ca.crt"
cert = "tls/agent.crt"
key = "tls/agent.key"
[[meters]]
id = "M1"
map = "sdm630"
port = 5020
unit_id = 3
[[meters]]
id = "M2"
map = "em24"
transport = "rtu"
serial_port = "/dev/ttyUSB0"
"""


def write(tmp: Path, text: str) -> Path:
    p = tmp / "agent.toml"
    p.write_text(text)
    return p


def test_load_resolves_paths_relative_to_the_file(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.agent_id == "tx-0001"
    assert cfg.signing_key == tmp_path / "keys/signing.pem"
    assert cfg.broker.ca == tmp_path / "tls/ca.crt"
    assert cfg.meters[0].link == ("tcp", "127.0.0.1:5020")
    assert cfg.meters[1].link == ("rtu", "/dev/ttyUSB0")
    assert cfg.poll_interval_s == 15.0


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATTRAIL_EDGE_POLL_INTERVAL_S", "60")
    monkeypatch.setenv("WATTRAIL_EDGE_BROKER__HOST", "10.1.2.3")
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.poll_interval_s == 60
    assert cfg.broker.host == "10.1.2.3"
    assert cfg.broker.port == 8883, "a nested override must keep the file's other fields"


@pytest.mark.parametrize(("change", "message"), [
    pytest.param(('map = "sdm630"', 'map = "sdm999"'), "unknown register map", id="unknown-map"),
    pytest.param(('serial_port = "/dev/ttyUSB0"', ""), "needs serial_port", id="rtu-no-port"),
    pytest.param(('id = "M2"', 'id = "M1"'), "appears twice", id="duplicate-meter"),
    pytest.param(('agent_id = "tx-0001"', 'agent_id = "a/b"'), "agent id .* refused", id="agent-id"),
    pytest.param(('unit_id = 3', 'unit_id = 300'), "less than or equal to 247", id="unit-id"),
    pytest.param(('port = 8883', 'port = 8883\nwhat = 1'), "Extra inputs", id="typo-in-broker"),
])
def test_bad_configs_say_what_is_wrong(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    text = BASE.replace(change[0], change[1], 1)
    with pytest.raises(ValidationError, match=message):
        load_config(write(tmp_path, text))
