"""The edge agent healing from faults, against real parts: a simulator whose fault plan kills
or busies some meters, the session's TLS broker behind a cuttable proxy, and the verifier.

- the broker unreachable for several poll cycles: every envelope arrives, first-seen in seq
  order, no gap; the last will says "offline" while cut, the birth "online" after; the outbox
  drains to empty after the cloud's ack;
- a dead meter and a busy meter (exception 0x06) on the same gateway as healthy ones: they
  yield COMMS_LOST every cycle, their circuits open with growing probe waits, and the healthy
  meters' readings stay on the tick (measured), as the health endpoint reports.
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
from typer.testing import CliRunner

from edge.agent import Agent
from edge.config import AgentConfig, BrokerSettings, MeterConfig
from firmware_sim.faults import FaultPlan, MeterFaults
from firmware_sim.grid_service import build_simulation
from protocols.reading import Quality
from protocols.topics import encode_ack
from security.chain import ChainState
from security.keys import generate_key, save_private_key
from security.verify import Status, verify_envelope
from tests.conftest import ClientCert, Services
from tests.support.edge import keyring_for
from tests.support.mqtt import MqttTestClient, Received
from tests.support.net import free_port
from tests.support.proxy import TcpProxy
from wattrail.cli import app
from wattrail.commands.edge import status_report

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


class Sim:
    def __init__(self, host: str, port: int, units: list[tuple[int, str]], models: dict[str, str],
                 dead: str, busy: str) -> None:
        self.host, self.port, self.units, self.models = host, port, units, models
        self.dead, self.busy = dead, busy


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """A 60-meter grid; on the first gateway, one meter never answers and one is always
    busy (Modbus exception 0x06). Served by `firmware_sim.grid_service.run` in a child process."""
    d = tmp_path_factory.mktemp("sim")
    grid, ep, faults = d / "grid.json", d / "ep.json", d / "faults.json"
    simulation = build_simulation(meters=60, seed=3, grid_file=grid)
    gw_units = next(iter(simulation.grid.gateways().values()))
    models = simulation.grid.meter_models()
    dead, busy = gw_units[1][1], gw_units[4][1]
    faults.write_text(json.dumps(FaultPlan(3, {
        dead: MeterFaults(timeout_prob=1.0),
        busy: MeterFaults(exception_prob=1.0, exception_code=0x06)}).to_dict()))
    code = ("from firmware_sim.grid_service import run\n"
            f"run(meters=60, seed=3, grid_file={str(grid)!r}, speed=60, theft_rate=0.0, "
            f"fault_file={str(faults)!r}, endpoints_out={str(ep)!r}, base_port=0, "
            "duration_s=300)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not ep.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ep.exists(), "simulator did not start"
    time.sleep(0.2)
    gateway = json.loads(ep.read_text())["endpoints"][0]
    try:
        yield Sim(gateway["host"], gateway["port"],
                  [(u["unit_id"], u["meter_id"]) for u in gateway["units"]], models, dead, busy)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def make_config(tmp: Path, agent_id: str, services: Services, cert: ClientCert, sim: Sim, *,
                units: list[tuple[int, str]], interval: float, broker_port: int | None = None,
                **kw: object) -> AgentConfig:
    key_path = tmp / "signing.key"
    save_private_key(generate_key(), key_path)
    meters = [MeterConfig(id=m, map=sim.models[m], host=sim.host, port=sim.port, unit_id=u)
              for u, m in units]
    return AgentConfig(
        agent_id=agent_id, poll_interval_s=interval, modbus_timeout_s=0.3, modbus_retries=0,
        meters=meters, signing_key=key_path, outbox=tmp / "outbox.db",
        broker=BrokerSettings(host=services.mqtt_host, port=broker_port or services.mqtt_port,
                              ca=services.ca_cert, cert=cert.cert, key=cert.key,
                              resend_after_s=60, backoff_cap_s=0.5, keepalive_s=5),
        **kw)  # type: ignore[arg-type]


@pytest.fixture
def cloud(services: Services, issue_client_cert: Callable[[str], ClientCert],
          agent_id: str) -> Iterator[MqttTestClient]:
    cert = issue_client_cert("wattrail-ingestor")
    c = MqttTestClient(services.mqtt_host, services.mqtt_port, services.ca_cert,
                       cert=cert.cert, key=cert.key)
    assert c.connect()
    for kind in ("readings", "events", "status"):
        c.subscribe(f"$share/{uuid.uuid4().hex[:6]}/wattrail/v1/{agent_id}/{kind}")
    yield c
    c.publish(f"wattrail/v1/{agent_id}/status", b"", qos=1)  # no retained litter
    c.close()


def collect(cloud: MqttTestClient, until: Callable[[list[Received]], bool],
            timeout: float = 20.0) -> list[Received]:
    got: list[Received] = []
    deadline = time.monotonic() + timeout
    while not until(got) and time.monotonic() < deadline:
        m = cloud.receive(0.05)
        if m is not None:
            got.append(m)
    return got


def of_kind(msgs: list[Received], kind: str) -> list[Received]:
    return [m for m in msgs if m.topic.endswith("/" + kind)]


def test_broker_outage_for_several_cycles_loses_nothing_and_drains(
    services: Services, issue_client_cert: Callable[[str], ClientCert], agent_id: str,
    cloud: MqttTestClient, sim: Sim, tmp_path: Path,
) -> None:
    healthy = [u for u in sim.units if u[1] not in (sim.dead, sim.busy)][:6]
    proxy = TcpProxy(services.mqtt_host, services.mqtt_port)
    interval = 0.3
    cfg = make_config(tmp_path, agent_id, services, issue_client_cert(agent_id), sim,
                      units=healthy, interval=interval, broker_port=proxy.port)
    agent = Agent(cfg)
    agent.publisher.start()
    cut_seqs: list[int] = []

    async def produce() -> None:
        for _ in range(3):
            await agent.cycle()
            await asyncio.sleep(interval)
        proxy.cut()  # the broker is gone for 6 poll cycles; the agent keeps sealing
        for _ in range(6):
            seq = await agent.cycle()
            assert seq is not None
            cut_seqs.append(seq)
            await asyncio.sleep(interval)
        assert agent.publisher.state.value in ("backoff", "connecting")
        proxy.restore()
        for _ in range(3):
            await agent.cycle()
            await asyncio.sleep(interval)
        agent.poller.close()  # pymodbus clients belong to this loop

    try:
        asyncio.run(produce())
        head = agent.outbox.head().seq
        assert head == 12
        msgs = collect(cloud, lambda g: len({m.payload for m in of_kind(g, "readings")}) >= head)
        ring, chain = keyring_for(cfg), ChainState()
        seqs = []
        for data in dict.fromkeys(m.payload for m in of_kind(msgs, "readings")):
            v = verify_envelope(data, ring, chain)  # first-seen order, duplicates dropped
            assert v.status is Status.OK, (v.status, v.reason)
            assert v.payload is not None
            seqs.append(v.payload.seq)
            assert all(r.quality is Quality.VALID for r in v.payload.readings)
        assert seqs == list(range(1, head + 1)), f"lost or reordered: {seqs}"
        assert set(cut_seqs) <= set(seqs)
        # birth, then the broker's last will when the line was cut, then birth again
        states = [json.loads(m.payload)["state"] for m in of_kind(msgs, "status") if m.payload]
        assert states[:1] == ["online"]
        assert "offline" in states
        assert states[states.index("offline"):].count("online") >= 1, states
        assert agent.publisher.stats.connects >= 2
        # the cloud commits everything: the outbox drains to empty
        assert agent.outbox.depth == head
        last = agent.outbox.envelope_hash(head)
        assert last is not None
        cloud.publish(f"wattrail/v1/{agent_id}/ack", encode_ack(head, last), qos=1)
        deadline = time.monotonic() + 10
        while agent.outbox.depth and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.outbox.depth == 0
        assert agent.outbox.confirmed_seq() == head
    finally:
        agent.close()
        proxy.close()


def test_dead_and_busy_meters_are_skipped_and_the_others_keep_their_schedule(
    services: Services, issue_client_cert: Callable[[str], ClientCert], agent_id: str,
    cloud: MqttTestClient, sim: Sim, tmp_path: Path,
) -> None:
    interval, threshold = 0.5, 2
    # the dead meter first on the link: while its circuit is closed it delays every meter after
    # it by a full timeout (0.3 s); once open, it must delay nobody
    units = [u for u in sim.units if u[1] == sim.dead] + \
        [u for u in sim.units if u[1] not in (sim.dead, sim.busy)][:6] + \
        [u for u in sim.units if u[1] == sim.busy]
    health_port = free_port()
    cfg = make_config(tmp_path, agent_id, services, issue_client_cert(agent_id), sim,
                      units=units, interval=interval, breaker_threshold=threshold,
                      breaker_base_s=1.0, breaker_cap_s=8.0, stagger_fraction=0.0,
                      health_port=health_port)
    agent = Agent(cfg)
    live: dict[str, object] = {}

    async def run() -> None:
        task = asyncio.create_task(agent.run(asyncio.Event(), cycles=16))
        while agent.stats.sealed < 15:
            await asyncio.sleep(0.05)
        live.update(await asyncio.to_thread(status_report, cfg))  # while it runs
        await task

    started = time.monotonic()
    asyncio.run(run())
    elapsed = time.monotonic() - started
    ring, chain = keyring_for(cfg), ChainState()
    from edge.outbox import Outbox

    late: list[float] = []  # per cycle: the latest healthy reading, seconds after the tick
    with Outbox(cfg.outbox) as ob:
        envelopes = [p.data for p in ob.iter_pending()]
    assert len(envelopes) == 16
    for i, data in enumerate(envelopes):
        v = verify_envelope(data, ring, chain)
        assert v.status is Status.OK, v.reason
        assert v.payload is not None
        by_id = {r.meter_id: r for r in v.payload.readings}
        assert set(by_id) == {m.id for m in cfg.meters}
        assert by_id[sim.dead].quality is Quality.COMMS_LOST and by_id[sim.dead].v_l1 is None
        assert by_id[sim.busy].quality is Quality.COMMS_LOST
        healthy = [r for m, r in by_id.items() if m not in (sim.dead, sim.busy)]
        assert all(r.quality is Quality.VALID for r in healthy), f"cycle {i}"
        tick = min(r.ts_ms for r in v.payload.readings) // 500 * 500
        late.append(max(r.ts_ms for r in healthy) / 1000 - tick / 1000)
    # before the trip the dead meter's timeout delays the others (this is what we measure);
    # after it, healthy readings are taken right after the tick, probes come last
    assert min(late[:threshold]) >= 0.25, late
    assert max(late[threshold:]) < 0.2, late
    print(f"\nhealthy meters' lateness after the tick: before trip {late[:threshold]}, after: "
          f"median {sorted(late[threshold:])[len(late[threshold:]) // 2]:.3f} s, "
          f"max {max(late[threshold:]):.3f} s; 16 cycles in {elapsed:.1f} s")

    dead_stats = agent.poller.stats.by_meter[sim.dead]
    assert dead_stats["skipped"] >= 8, dead_stats  # asked on only a few of 16 cycles
    assert dead_stats["comms_lost"] + dead_stats["skipped"] == 16
    # events: the circuit opened again after each failed probe, with growing waits
    msgs = collect(cloud, lambda g: False, timeout=2.0)
    events = [json.loads(m.payload) for m in of_kind(msgs, "events")]
    waits = [e["retry_in_s"] for e in events
             if e["event"] == "meter-unreachable" and e["meter_id"] == sim.dead]
    assert len(waits) >= 3, events
    assert waits == sorted(waits) and waits[-1] > waits[0] * 2, waits
    assert any(e["event"] == "meter-unreachable" and e["meter_id"] == sim.busy for e in events)
    # the live health endpoint, as `wattrail edge status` reads it
    metrics = live["live"]
    assert isinstance(metrics, dict), live
    assert metrics[f'wattrail_edge_polls_total{{meter="{sim.dead}",result="skipped"}}'] >= 8
    healthy_id = units[1][1]
    assert metrics[f'wattrail_edge_polls_total{{meter="{healthy_id}",result="ok"}}'] >= 14
    assert metrics[f'wattrail_edge_meter_circuit_open{{meter="{sim.dead}"}}'] in (0.0, 1.0)
    assert metrics["wattrail_edge_head_seq"] >= 15
    assert metrics["wattrail_edge_broker_connected"] == 1.0
    assert any(k.startswith("wattrail_edge_request_seconds_bucket") for k in metrics)
    # and the command itself, after the agent stopped: outbox only
    res = CliRunner().invoke(app, ["edge", "status", "--config", str(_write_toml(cfg, tmp_path))])
    assert res.exit_code == 0, res.output
    assert "depth 16" in res.output and "head seq 16" in res.output, res.output
    assert "live metrics: not available" in res.output


def _write_toml(cfg: AgentConfig, tmp: Path) -> Path:
    b = cfg.broker
    meters = "\n".join(f'[[meters]]\nid = "{m.id}"\nmap = "{m.map}"\nhost = "{m.host}"\n'
                       f"port = {m.port}\nunit_id = {m.unit_id}" for m in cfg.meters)
    path = tmp / "agent.toml"
    path.write_text(f'agent_id = "{cfg.agent_id}"\nsigning_key = "{cfg.signing_key}"\n'
                    f'outbox = "{cfg.outbox}"\nhealth_port = {cfg.health_port}\n'
                    f'[broker]\nca = "{b.ca}"\ncert = "{b.cert}"\nkey = "{b.key}"\n{meters}\n')
    return path
