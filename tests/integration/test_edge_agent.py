"""The edge agent against real parts: the simulator's Modbus gateway, the TLS broker, and the
same verifier the cloud and the auditor use. Envelopes arrive signed, chained (seq +1, prev
hash), with one reading per configured meter per cycle, physical values for live meters and
COMMS_LOST (no values) for a meter that does not answer; a kill -9 mid-run continues the chain.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.agent import Agent
from edge.config import AgentConfig, BrokerSettings, MeterConfig
from firmware_sim.grid_file import load_grid
from protocols.envelope import GENESIS_PREV_HASH, envelope_hash
from protocols.reading import Quality
from protocols.topics import encode_ack
from security.chain import ChainState
from security.keys import generate_key, save_private_key
from security.verify import Status, verify_envelope
from tests.conftest import ClientCert, Services
from tests.support.edge import keyring_for
from tests.support.mqtt import MqttTestClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict, dict[str, str]]]:
    d = tmp_path_factory.mktemp("sim")
    ep, grid = d / "ep.json", d / "grid.json"
    log = (d / "sim.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wattrail.cli", "sim", "--meters", "60", "--speed", "60",
         # base port 0: every gateway on a port the OS picks (base+1 may be taken)
         "--base-port", "0", "--endpoints", str(ep), "--grid", str(grid),
         "--duration", "300"], stdout=subprocess.DEVNULL, stderr=log)
    try:
        # generous: on a loaded 2-core machine importing and building the grid takes a while
        deadline = time.monotonic() + 120
        while not ep.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        if not ep.exists():
            proc.kill()
            proc.wait(30)
            err = (d / "sim.log").read_text()
            pytest.fail(f"simulator did not start (exit {proc.returncode}):\n{err[-2000:]}")
        time.sleep(0.2)
        gateway = json.loads(ep.read_text())["endpoints"][0]
        yield gateway, load_grid(grid).meter_models()
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def make_config(tmp: Path, agent_id: str, services: Services, cert: ClientCert, gateway: dict,
                models: dict[str, str], *, ghost: bool = True, interval: float = 0.5) -> AgentConfig:
    key_path = tmp / "signing.key"
    if not key_path.exists():
        save_private_key(generate_key(), key_path)
    meters = [MeterConfig(id=u["meter_id"], map=models[u["meter_id"]], host=gateway["host"],
                          port=gateway["port"], unit_id=u["unit_id"]) for u in gateway["units"][:8]]
    if ghost:  # configured, but nobody answers at this unit id
        meters.append(MeterConfig(id="GHOST-1", map="sdm630", host=gateway["host"],
                                  port=gateway["port"], unit_id=247))
    return AgentConfig(
        agent_id=agent_id, poll_interval_s=interval, modbus_timeout_s=0.5, modbus_retries=0,
        meters=meters, signing_key=key_path, outbox=tmp / "outbox.db",
        broker=BrokerSettings(host=services.mqtt_host, port=services.mqtt_port,
                              ca=services.ca_cert, cert=cert.cert, key=cert.key,
                              resend_after_s=60))


@pytest.fixture
def cloud(services: Services, issue_client_cert: Callable[[str], ClientCert],
          agent_id: str) -> Iterator[MqttTestClient]:
    cert = issue_client_cert("wattrail-ingestor")
    c = MqttTestClient(services.mqtt_host, services.mqtt_port, services.ca_cert,
                       cert=cert.cert, key=cert.key)
    assert c.connect()
    c.subscribe(f"$share/{uuid.uuid4().hex[:6]}/wattrail/v1/{agent_id}/readings")
    yield c
    c.close()


def receive(cloud: MqttTestClient, n: int, timeout: float = 30) -> list[bytes]:
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        m = cloud.receive(0.1)
        if m is not None:
            out.append(m.payload)
    return out


def test_agent_polls_signs_chains_and_publishes(
    services: Services, issue_client_cert: Callable[[str], ClientCert], agent_id: str,
    cloud: MqttTestClient, simulator: tuple[dict, dict[str, str]], tmp_path: Path,
) -> None:
    gateway, models = simulator
    cfg = make_config(tmp_path, agent_id, services, issue_client_cert(agent_id), gateway, models)
    agent = Agent(cfg)
    asyncio.run(agent.run(asyncio.Event(), cycles=3))
    envelopes = receive(cloud, 3)
    assert len(envelopes) == 3
    ring, chain = keyring_for(cfg), ChainState()
    prev = GENESIS_PREV_HASH
    for seq, data in enumerate(envelopes, 1):
        v = verify_envelope(data, ring, chain)
        assert v.status is Status.OK, v.reason
        assert v.payload is not None
        assert v.payload.seq == seq
        assert v.payload.prev_hash == prev
        prev = envelope_hash(data)
        readings = {r.meter_id: r for r in v.payload.readings}
        assert set(readings) == {m.id for m in cfg.meters}, "one reading per meter per cycle"
        ghost = readings.pop("GHOST-1")
        assert ghost.quality is Quality.COMMS_LOST
        assert ghost.import_wh is None
        assert ghost.v_l1 is None, "a silent meter must not get values"
        for r in readings.values():
            assert r.quality is Quality.VALID, r
            assert r.v_l1 is not None and 180 < r.v_l1 < 260
            assert r.import_wh is not None and r.import_wh >= 0


def test_kill_9_mid_run_continues_the_chain(
    services: Services, issue_client_cert: Callable[[str], ClientCert], agent_id: str,
    cloud: MqttTestClient, simulator: tuple[dict, dict[str, str]], tmp_path: Path,
) -> None:
    gateway, models = simulator
    cfg = make_config(tmp_path, agent_id, services, issue_client_cert(agent_id), gateway, models,
                      ghost=False, interval=0.3)
    cfg_path = tmp_path / "agent.json"
    cfg_path.write_text(cfg.model_dump_json())
    script = ("import asyncio, sys, pathlib\n"
              "from edge.agent import Agent\nfrom edge.config import AgentConfig\n"
              "cfg = AgentConfig.model_validate_json(pathlib.Path(sys.argv[1]).read_text())\n"
              "asyncio.run(Agent(cfg).run(asyncio.Event()))\n")
    for _round in range(3):
        proc = subprocess.Popen([sys.executable, "-c", script, str(cfg_path)],
                                cwd=Path(__file__).resolve().parents[2])
        time.sleep(2.0)
        proc.kill()  # SIGKILL: no cleanup, whatever was being written is torn
        proc.wait()
    got = receive(cloud, 5, timeout=10)
    while (m := cloud.receive(1.0)) is not None:
        got.append(m.payload)
    ring, chain = keyring_for(cfg), ChainState()
    seqs = []
    for data in dict.fromkeys(got):  # duplicates (resends) are allowed, forks are not
        v = verify_envelope(data, ring, chain)
        assert v.status in (Status.OK, Status.REORDERED), v.reason
        assert v.payload is not None
        seqs.append(v.payload.seq)
    assert seqs, "nothing was published"
    assert sorted(set(seqs)) == list(range(1, max(seqs) + 1)), f"gap in {sorted(set(seqs))}"
    # what the broker saw is all that the agent's outbox holds: nothing signed went missing
    from edge.outbox import Outbox

    with Outbox(cfg.outbox) as ob:
        assert ob.head().seq >= max(seqs)
        assert [p.seq for p in ob.iter_pending()] == list(range(1, ob.head().seq + 1))
        last = ob.envelope_hash(max(seqs))
    assert last is not None
    ack = cloud.publish(f"wattrail/v1/{agent_id}/ack", encode_ack(max(seqs), last), qos=1)
    assert ack is not None
