"""docker-compose.yml and the broker configuration describe the same stack scripts/services runs."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_compose_parses_and_names_the_services() -> None:
    doc = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"timescaledb", "mosquitto"} <= set(services)
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert "pg17" in services["timescaledb"]["image"]
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    mounts = " ".join(services["mosquitto"]["volumes"])
    assert "deploy/mosquitto/mosquitto.conf" in mounts
    assert "deploy/mosquitto/acl" in mounts
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} must not listen on every interface"


def test_compose_broker_config_requires_client_certificates() -> None:
    conf = dict(
        line.split(None, 1)
        for line in (REPO / "deploy/mosquitto/mosquitto.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert conf["allow_anonymous"] == "false"
    assert conf["require_certificate"] == "true"
    assert conf["use_identity_as_username"] == "true"
    assert conf["acl_file"].endswith("/acl")


def test_acl_confines_agents_to_their_own_id() -> None:
    rules = [
        line.split()
        for line in (REPO / "deploy/mosquitto/acl").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    patterns = [r for r in rules if r[0] == "pattern"]
    assert patterns, "agents need pattern rules keyed on their CN"
    for _, access, topic in patterns:
        assert topic.startswith("wattrail/v1/%u/"), topic
        if access in ("write", "readwrite"):
            assert not topic.endswith("/ack"), "agents must never write acks"
    # nothing grants everyone a wildcard outside their own id
    assert not any(r[0] == "topic" and r[1] != "read" and "%u" not in r[2] and r[2] != "wattrail/v1/+/ack"
                   for r in rules)
