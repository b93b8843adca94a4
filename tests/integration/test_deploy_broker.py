"""docker-compose's broker, for real: the Mosquitto binary runs deploy/mosquitto/mosquitto.conf and
deploy/mosquitto/acl (only the container paths and the port rewritten) on the certificate folder
`wattrail deploy init` writes, and real MQTT v5 clients over mutual TLS check what the stack relies on:
agents publish under their own id only, the ingestor's shared subscription receives it and writes
acks, strangers (no certificate, another CA) are refused, the compose healthcheck's own command
succeeds, and an agent revoked with `wattrail pki revoke` is refused once deploy init has refreshed
the broker's CRL and the broker reloaded.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from typer.testing import CliRunner

from security.pki import init_ca, issue_agent, issue_service
from tests.support.mqtt import MqttTestClient
from tests.support.net import free_port
from wattrail.cli import app

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
ACL = REPO / "deploy" / "mosquitto" / "acl"
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
MOSQUITTO = COMPOSE["services"]["mosquitto"]
PKI_INIT = [str(a) for a in COMPOSE["services"]["pki-init"]["command"]]
CONTAINER_PORT = 8883
AGENTS = ("GW-R1-F01-T01", "GW-R1-F01-T02")
INGESTOR = "wattrail-ingestor"
NOT_AUTHORIZED = 0x87
HOST = "localhost"  # the name the healthcheck dials; deploy init puts it in the server certificate

runner = CliRunner()


def _compose_opts(name: str) -> list[str]:
    return [PKI_INIT[i + 1] for i, a in enumerate(PKI_INIT) if a == name]


def deploy_init(root: Path) -> str:
    """`wattrail deploy init` as the compose job runs it (its broker names), without a database."""
    args = ["deploy", "init", "--pki-dir", str(root / "pki"), "--broker-dir", str(root / "certs")]
    for opt in ("--broker-dns", "--broker-ip"):
        for value in _compose_opts(opt):
            args += [opt, value]
    for agent in AGENTS:
        args += ["--agent", agent]
    res = runner.invoke(app, args, env={"WATTRAIL_DSN": ""})
    assert res.exit_code == 0, res.output
    return res.output


class ComposeBroker:
    """mosquitto -c <deploy/mosquitto/mosquitto.conf with the compose mounts mapped to `root`>."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.certs = root / "certs"  # the `broker-certs` volume deploy init writes
        self.port = free_port()
        # container path -> host path, one per volume of the compose service (the conf itself aside)
        self.mounts = {"/mosquitto/config/acl": root / "config" / "acl",
                       "/mosquitto/certs": self.certs,
                       "/mosquitto/data": root / "data"}
        targets = {str(v).split(":")[1] for v in MOSQUITTO["volumes"]}
        assert targets == {*self.mounts, "/mosquitto/config/mosquitto.conf"}, targets
        (root / "config").mkdir()
        (root / "data").mkdir()
        shutil.copyfile(ACL, root / "config" / "acl")
        self.conf = root / "config" / "mosquitto.conf"
        self.conf.write_text(self.rewrite(CONF.read_text()))
        self.log = root / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def host_path(self, path: str) -> str:
        for target, host in self.mounts.items():
            if path == target or path.startswith(target + "/"):
                return str(host) + path[len(target):]
        raise AssertionError(f"{path} is under no volume of the compose mosquitto service")

    def rewrite(self, text: str) -> str:
        out, listeners = [], 0
        for line in text.splitlines():
            words = line.split()
            if words and words[0] == "listener":
                assert words == ["listener", str(CONTAINER_PORT)], line
                assert f"127.0.0.1:{CONTAINER_PORT}:{CONTAINER_PORT}" in MOSQUITTO["ports"]
                listeners += 1
                line = f"listener {self.port} 127.0.0.1"  # loopback only, on a free port
            elif len(words) == 2 and words[1].startswith("/mosquitto/"):
                line = f"{words[0]} {self.host_path(words[1])}"
            out.append(line)
        assert listeners == 1
        # as scripts/services does: run as whoever started us rather than dropping to `mosquitto`
        out.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        conf = "\n".join(out) + "\n"
        live = [ln for ln in conf.splitlines() if not ln.lstrip().startswith("#")]
        assert not [ln for ln in live if "/mosquitto/" in ln], "a container path was not mapped"
        return conf

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited {self.proc.returncode}:\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen on {self.port}:\n{self.tail()}")

    def reload(self) -> None:
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[ComposeBroker]:
    deploy_init(tmp_path)
    b = ComposeBroker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def client(broker: ComposeBroker) -> Iterator[Any]:
    """client(identity) -> a connected-or-not MqttTestClient; identity is an agent id or service
    name from deploy init's CA, or (cert, key, ca) paths; all closed at teardown."""
    made: list[MqttTestClient] = []
    pki = broker.root / "pki"

    def make(identity: str | tuple[Path | None, Path | None, Path]) -> MqttTestClient:
        if isinstance(identity, str):
            d = pki / ("services" if identity.startswith("wattrail-") else "agents") / identity
            cert, key, ca = d / "tls.crt", d / "tls.key", pki / "ca.crt"
        else:
            cert, key, ca = identity
        c = MqttTestClient(HOST, broker.port, ca, cert=cert, key=key,
                           client_id=f"t-{uuid.uuid4().hex[:8]}")
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def test_agents_ingestor_and_strangers_on_the_compose_broker(broker: ComposeBroker, client: Any,
                                                             tmp_path: Path) -> None:
    a, b = AGENTS
    ingestor = client(INGESTOR)
    assert ingestor.connect(), f"ingestor refused: {ingestor.connack}\n{broker.tail()}"
    codes = ingestor.subscribe("$share/ingest/wattrail/v1/+/readings")
    assert not any(c.is_failure for c in codes), codes

    agent = client(a)
    assert agent.connect(), f"{a} refused: {agent.connack}\n{broker.tail()}"
    acks = agent.subscribe(f"wattrail/v1/{a}/ack")
    assert not any(c.is_failure for c in acks), acks

    # its own readings: PUBACK success, and the ingestor's shared subscription gets them
    rc = agent.publish(f"wattrail/v1/{a}/readings", b"own-1")
    assert rc is not None and not rc.is_failure, rc
    got = ingestor.receive(5)
    assert got is not None and (got.topic, got.payload) == (f"wattrail/v1/{a}/readings", b"own-1")

    # the ingestor acknowledges; only that agent reads its acks (Mosquitto grants the other
    # agent's SUBSCRIBE, but the ACL keeps the message from it at delivery)
    snoop = client(b)
    assert snoop.connect(), f"{b} refused: {snoop.connack}\n{broker.tail()}"
    snoop.subscribe(f"wattrail/v1/{a}/ack")
    rc = ingestor.publish(f"wattrail/v1/{a}/ack", b"ack-1")
    assert rc is not None and not rc.is_failure, rc
    got = agent.receive(5)
    assert got is not None and got.payload == b"ack-1"
    assert snoop.receive(0.5) is None

    # under another agent's id, or writing an ack: refused, and nothing reaches the ingestor
    for topic in (f"wattrail/v1/{b}/readings", f"wattrail/v1/{a}/ack"):
        rc = agent.publish(topic, b"forged")
        assert rc is not None and rc.value == NOT_AUTHORIZED, (topic, rc)
    assert ingestor.receive(1.0) is None
    assert agent.receive(0.2) is None  # its forged ack did not come back to it either

    # no certificate, and a certificate for the same agent id from another CA: refused
    assert not client((None, None, broker.root / "pki" / "ca.crt")).connect()
    other = tmp_path / "other-ca"
    init_ca(other)
    issue_agent(other, a)
    foreign = client((other / "agents" / a / "tls.crt", other / "agents" / a / "tls.key",
                      broker.root / "pki" / "ca.crt"))
    assert not foreign.connect()
    rc = agent.publish(f"wattrail/v1/{a}/readings", b"own-2")  # the agent is still served
    assert rc is not None and not rc.is_failure, rc
    got = ingestor.receive(5)
    assert got is not None and got.payload == b"own-2"


def _healthcheck_argv(broker: ComposeBroker) -> list[str]:
    test = [str(t) for t in MOSQUITTO["healthcheck"]["test"]]
    assert test[0] == "CMD", test
    argv = test[1:]
    assert argv[argv.index("-p") + 1] == str(CONTAINER_PORT), argv
    argv[argv.index("-p") + 1] = str(broker.port)
    return [broker.host_path(a) if a.startswith("/mosquitto/") else a for a in argv]


def test_the_compose_healthcheck_passes_against_the_broker(broker: ComposeBroker) -> None:
    argv = _healthcheck_argv(broker)
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed: `scripts/services install` adds mosquitto-clients")
    res = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert res.returncode == 0, f"{argv}\n{res.stdout}{res.stderr}\n{broker.tail()}"
    # Mosquitto's acl_file grants every SUBSCRIBE and filters at delivery, so exit 0 proves mutual
    # TLS with a certificate of this CA (and a live broker), not the ACL: with the healthcheck's
    # name on a certificate from another CA the same command fails
    other = broker.root / "other-ca"
    init_ca(other)
    issue_service(other, "wattrail-healthcheck")
    d = other / "services" / "wattrail-healthcheck"
    foreign = [str(d / "tls.crt") if a.endswith("/healthcheck.crt") else
               str(d / "tls.key") if a.endswith("/healthcheck.key") else a for a in argv]
    assert len(set(foreign) - set(argv)) == 2, foreign
    res = subprocess.run(foreign, capture_output=True, text=True, timeout=20, check=False)
    assert res.returncode != 0, res
    # and it does notice a broker that is down
    broker.stop()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert res.returncode != 0, res


def _serials(crl_file: Path) -> set[int]:
    return {r.serial_number for r in x509.load_pem_x509_crl(crl_file.read_bytes())}


def test_a_revoked_agent_is_refused_after_deploy_init_and_a_reload(broker: ComposeBroker,
                                                                  client: Any) -> None:
    a, b = AGENTS
    for agent in AGENTS:
        c = client(agent)
        assert c.connect(), f"{agent} refused before any revocation\n{broker.tail()}"
        c.close()
    pki = broker.root / "pki"
    serial = x509.load_pem_x509_certificate((pki / "agents" / a / "tls.crt").read_bytes()).serial_number

    res = runner.invoke(app, ["pki", "revoke", a, "--dir", str(pki)])
    assert res.exit_code == 0, res.output
    assert serial in _serials(pki / "crl.pem")
    assert serial not in _serials(broker.certs / "ca.crl")  # revoke alone never reaches the broker

    out = deploy_init(broker.root)
    assert re.search(r"broker file \S*ca\.crl: updated", out), out
    assert serial in _serials(broker.certs / "ca.crl")
    broker.reload()

    deadline, refused = time.monotonic() + 10, False
    while not refused and time.monotonic() < deadline:  # SIGHUP is handled in the main loop
        c = client(a)
        refused = not c.connect()
        c.close()
        if not refused:
            time.sleep(0.2)
    assert refused, f"revoked {a} still connects after the reload\n{broker.tail()}"
    assert broker.proc is not None and broker.proc.poll() is None
    other = client(b)
    assert other.connect(), f"{b} refused after {a} was revoked\n{broker.tail()}"
    rc = other.publish(f"wattrail/v1/{b}/readings", b"still-here")
    assert rc is not None and not rc.is_failure, rc
