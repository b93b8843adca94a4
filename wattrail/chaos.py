"""The reliability campaign's engine: stream known signed envelopes through the real pipeline
(Publisher + Outbox agents -> TLS Mosquitto -> `wattrail ingest` processes -> TimescaleDB on a
private services instance), inject one fault, then compare the database with what was signed.

Every envelope is built from a fixed Ed25519 key and a deterministic reading set, so the
campaign knows exactly which bytes must end up in `envelopes` and which (meter, ts) rows in
`readings`. Ed25519 signatures are deterministic too: an agent that re-signs seq N after a crash
produces the very same bytes, which the cloud treats as a duplicate.

Used by `wattrail chaos run` (wattrail/commands/chaos.py), tests/chaos/ and tests/security/.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.store import readings_sql
from protocols.envelope import GENESIS_PREV_HASH, ClockStatus, Payload, encode_payload, envelope_hash
from protocols.reading import Reading
from security.keyring import KeyCertificate
from security.keys import key_id, raw_public_key, save_private_key, sign_envelope

if TYPE_CHECKING:  # edge is imported where a scenario runs a real Agent, not at import
    from edge.config import AgentConfig

REPO = Path(__file__).resolve().parents[1]
SERVICES = REPO / "scripts" / "services"
T0 = 1_700_000_000_000  # the campaign's signed clock: envelope seq N is sent at T0 + N s
DAY = 86_400_000
POLL_INTERVAL_S = 15.0  # what one envelope stands for, to express drain speed vs real time


# -- signed material -----------------------------------------------------------------------------
def key_from_byte(b: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([b]) * 32)


def cert_for(key: Ed25519PrivateKey, agent_id: str, *, valid_from_ms: int = T0 - DAY,
             valid_to_ms: int = T0 + 30 * DAY) -> KeyCertificate:
    return KeyCertificate(agent_id, key_id(key), raw_public_key(key), valid_from_ms=valid_from_ms,
                          valid_to_ms=valid_to_ms, from_seq=1)


@dataclass
class Signer:
    """Signs agent `agent_id`'s chain; envelope N always has the same bytes."""

    agent_id: str
    key: Ed25519PrivateKey
    readings: int = 10  # per envelope

    def payload(self, seq: int, prev: bytes, *, sent_at_ms: int | None = None,
                variant: int = 0) -> Payload:
        sent_at = T0 + seq * 1000 if sent_at_ms is None else sent_at_ms
        rows = [Reading(f"{self.agent_id}-m{i}", T0 + seq * 1000 - 500,
                        import_wh=1000.0 + seq + i + variant * 0.5)
                for i in range(self.readings)]
        return Payload(self.agent_id, key_id(self.key), seq,
                       GENESIS_PREV_HASH if seq == 1 else prev, sent_at, ClockStatus.SYNCED, rows)

    def sign(self, payload: Payload, key: Ed25519PrivateKey | None = None) -> bytes:
        k = key or self.key
        return sign_envelope(k, key_id(k), encode_payload(payload))

    def envelope(self, seq: int, prev: bytes) -> bytes:
        return self.sign(self.payload(seq, prev))

    def chain(self, n: int) -> list[bytes]:
        out: list[bytes] = []
        prev = GENESIS_PREV_HASH
        for seq in range(1, n + 1):
            out.append(self.envelope(seq, prev))
            prev = envelope_hash(out[-1])
        return out


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
        n-th batch (wattrail/chaos_ingest.py: "mid-batch" exits 71, "after-commit" 70)."""
        cert, key = self.issue("wattrail-ingestor")
        e = dict(os.environ, WATTRAIL_DSN=dsn, WATTRAIL_MQTT_HOST=self.host,
                 WATTRAIL_MQTT_PORT=str(self.port), WATTRAIL_MQTT_CA=str(self.ca),
                 WATTRAIL_INGESTOR_CERT=str(cert), WATTRAIL_INGESTOR_KEY=str(key), **env)
        path = self.logs / f"ingest-{group}-{uuid.uuid4().hex[:4]}.log"
        cmd = (["wattrail.cli", "ingest"] if crash is None
               else ["wattrail.chaos_ingest", crash[0], str(crash[1]), "--"])
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


# -- checking the database against what was signed ------------------------------------------
@dataclass
class Result:
    scenario: str
    expected: int = 0  # readings signed (and that must be stored)
    stored: int = 0  # distinct expected (meter, ts) rows found
    lost: int = 0
    duplicated: int = 0
    quarantined: int = 0
    gaps: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    expect_quarantine: int = 0  # bad messages the scenario sent on purpose

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicated == 0 and self.gaps == 0
                and self.quarantined == self.expect_quarantine
                and not any("MISMATCH" in n for n in self.notes))


def check(dsn: str, signed: dict[str, list[bytes]], readings_per_env: int, r: Result) -> Result:
    """Fill `r` from the database: every signed envelope stored with its exact bytes, every
    reading once, no gap in any agent's seq, nothing quarantined."""
    expected_sha = {hashlib.sha256(e).digest() for chain in signed.values() for e in chain}
    with psycopg.connect(dsn) as c:
        stored_sha = {bytes(s) for (s,) in c.execute("SELECT sha256 FROM envelopes")}
        total, distinct = c.execute(  # type: ignore[misc]
            readings_sql.COUNT_AND_DISTINCT_KEYS).fetchone()
        gaps = c.execute("SELECT coalesce(sum(g), 0) FROM (SELECT max(seq) - count(*) AS g "
                         "FROM envelopes GROUP BY agent_id) x").fetchone()
        q = c.execute("SELECT coalesce(sum(count), 0) FROM quarantine").fetchone()
        aside = c.execute("SELECT count(*) FROM reading_conflicts").fetchone()
    missing_env = len(expected_sha - stored_sha)
    kept_aside = int(aside[0]) if aside else 0
    r.expected = len(expected_sha) * readings_per_env
    # a reading whose (meter, ts) was taken is kept in reading_conflicts: stored, not lost
    r.stored = min(int(distinct) + kept_aside, r.expected)
    if kept_aside:
        r.notes.append(f"{kept_aside} readings kept in reading_conflicts (their instant was taken)")
        r.figures["reading_conflicts"] = kept_aside
    r.lost = r.expected - r.stored
    r.duplicated = int(total) - int(distinct)
    r.gaps = int(gaps[0]) if gaps else 0
    r.quarantined = int(q[0]) if q else 0
    if stored_sha - expected_sha:
        r.notes.append(f"{len(stored_sha - expected_sha)} stored envelopes were never signed")
        r.lost += len(stored_sha - expected_sha) * readings_per_env  # counts as wrong, loudly
    if missing_env:
        r.notes.append(f"{missing_env} signed envelopes missing")
    return r


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


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# -- scales ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scale:
    agents: int
    envelopes: int  # per agent
    readings: int  # per envelope
    broker_kills: int
    agent_kills: int
    partition_backlog: int  # envelopes per agent signed while cut off
    outbox_limit: int
    refused: int
    agent_interval: float  # seconds between envelopes of the agent-kill subprocess
    ingestor_kills: int = 4  # half SIGKILLed mid-batch, half exiting between commit and ack
    db_crashes: int = 1  # immediate shutdowns of PostgreSQL during ingest
    disk_mb: int = 48  # the tablespace that fills up in disk-full
    clock_envelopes: int = 30  # per phase of clock-jump (before, after +1 h, after -1 h)
    bad_valid_envelopes: int = 200  # bad-envelopes: agent A's valid chain ...
    bad_readings: int = 10  # ... of this many readings per envelope ...
    bad_messages: int = 200  # ... with this many bad messages mixed in
    partition_hold_s: float = 12.0  # paho notices a silent link after ~2 x keepalive (5 s)


SCALES = {
    "small": Scale(agents=2, envelopes=150, readings=10, broker_kills=3, agent_kills=5,
                   partition_backlog=300, outbox_limit=20, refused=5, agent_interval=0.02,
                   ingestor_kills=4, db_crashes=1, disk_mb=48, clock_envelopes=30),
    "full": Scale(agents=4, envelopes=2_500, readings=100, broker_kills=20, agent_kills=50,
                  partition_backlog=2_500, outbox_limit=1_000, refused=50, agent_interval=0.005,
                  partition_hold_s=20.0,
                  ingestor_kills=20, db_crashes=5, disk_mb=1024, clock_envelopes=500,
                  bad_valid_envelopes=10_000, bad_readings=100, bad_messages=10_000),
}


# -- agents ------------------------------------------------------------------------------------
@dataclass
class Fleet:
    signers: list[Signer]
    publishers: list[Any]
    outboxes: list[Any]

    def stop(self) -> None:
        for p in self.publishers:
            p.stop()
        for ob in self.outboxes:
            ob.close()


def signers(prefix: str, n: int, readings: int, first_key: int = 40) -> list[Signer]:
    tag = uuid.uuid4().hex[:5]
    return [Signer(f"{prefix}-{tag}-{i}", key_from_byte(first_key + i), readings) for i in range(n)]


def start_fleet(svc: Services, sigs: list[Signer], tmp: Path, *, prefill: int,
                port: int | None = None) -> Fleet:
    from edge.outbox import Outbox
    from edge.publisher import BrokerConfig, Publisher

    fleet = Fleet(sigs, [], [])
    for s in sigs:
        ob = Outbox(tmp / f"{s.agent_id}.db")
        for seq, data in enumerate(s.chain(prefill), 1):
            ob.append(seq, data, 0)
        cert, key = svc.issue(s.agent_id)
        pub = Publisher(s.agent_id, BrokerConfig(svc.host, port or svc.port, svc.ca, cert, key,
                                                 keepalive=5),
                        ob, resend_after=1.5, backoff_cap=0.5)
        pub.start()
        fleet.publishers.append(pub)
        fleet.outboxes.append(ob)
    return fleet


# -- scenarios ---------------------------------------------------------------------------------
class Feeder(threading.Thread):
    """Appends each agent's chain to its outbox at a steady pace, as polling would, so that
    faults land in the middle of the stream and not after it."""

    def __init__(self, fleet: Fleet, chains: dict[str, list[bytes]], seconds: float) -> None:
        super().__init__(daemon=True)
        self.fleet, self.chains = fleet, chains
        n = max(len(c) for c in chains.values())
        self.interval = seconds / max(n, 1)
        self.done = threading.Event()
        self.halt = threading.Event()  # the scenario failed: stop before the outboxes close
        # cleared: hold the stream (its schedule waits too) until a fault's victim is ready, so
        # that the fault lands mid-stream however long the machine takes to start a process
        self.go = threading.Event()
        self.go.set()

    def stop(self) -> None:
        """Stop feeding (a scenario that fails stops it before closing the outboxes)."""
        self.halt.set()
        self.join(10)

    def run(self) -> None:
        n = max(len(c) for c in self.chains.values())
        start = time.monotonic()
        for i in range(n):
            if not self.go.is_set():
                held = time.monotonic()
                while not self.go.wait(0.1) and not self.halt.is_set():
                    pass
                start += time.monotonic() - held  # a held stream resumes at its pace
            if self.halt.is_set():
                break
            for s, ob, pub in zip(self.fleet.signers, self.fleet.outboxes, self.fleet.publishers,
                                  strict=True):
                chain = self.chains[s.agent_id]
                if i < len(chain):
                    ob.append(i + 1, chain[i], 0)
                    pub.notify()
            delay = start + (i + 1) * self.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        self.done.set()


def scenario_broker_kill(svc: Services, scale: Scale, tmp: Path, seed: int = 1) -> Result:
    """Mosquitto SIGKILLed `broker_kills` times while agents stream: it acknowledges QoS 1 from
    memory, so only the end-to-end commit ack can make this lossless."""
    r = Result("broker-kill")
    rng = random.Random(seed)
    sigs = signers("bk", scale.agents, scale.readings)
    dsn = svc.new_db([cert_for(s.key, s.agent_id) for s in sigs])
    chains = {s.agent_id: s.chain(scale.envelopes) for s in sigs}
    t0 = time.monotonic()
    ing = svc.ingestor(dsn, f"bk{uuid.uuid4().hex[:6]}")
    fleet = start_fleet(svc, sigs, tmp, prefill=0)
    feeder = Feeder(fleet, chains, seconds=scale.broker_kills * 0.9)
    feeder.start()
    mid_stream = 0
    try:
        for _ in range(scale.broker_kills):
            time.sleep(rng.uniform(0.3, 0.9))
            mid_stream += not feeder.done.is_set()
            svc.kill_broker()
            time.sleep(rng.uniform(0.05, 0.3))
            svc.start_broker()
        feeder.join()
        ok = drained(fleet.outboxes, 120 + scale.envelopes * scale.agents / 50)
        if not ok:
            r.notes.append("outboxes did not drain")
        if ing.poll() is not None:
            r.notes.append(f"ingestor exited with {ing.returncode}")
    finally:
        feeder.stop()
        fleet.stop()
        _stop([ing])
    r.seconds = time.monotonic() - t0
    resends = sum(p.stats.resends for p in fleet.publishers)
    r.figures = {"kills": scale.broker_kills, "kills_mid_stream": mid_stream, "resends": resends}
    r.notes.append(f"{scale.broker_kills} broker SIGKILLs ({mid_stream} while the agents were "
                   f"still signing), {resends} resend rounds by the agents")
    return check(dsn, chains, scale.readings, r)


def tear_wal(outbox: Path, rng: random.Random) -> bool:
    wal = Path(str(outbox) + "-wal")
    if wal.exists() and wal.stat().st_size > 100:
        with open(wal, "r+b") as fh:
            fh.truncate(wal.stat().st_size - rng.randint(1, 64))
        return True
    return False


def scenario_agent_kill(svc: Services, scale: Scale, tmp: Path, seed: int = 2) -> Result:
    """The edge agent (a subprocess signing and publishing over its outbox file) SIGKILLed again
    and again, and after each kill the outbox's WAL loses its last bytes (a torn write)."""
    r = Result("agent-kill")
    rng = random.Random(seed)
    (s,) = signers("ak", 1, scale.readings, first_key=70)
    dsn = svc.new_db([cert_for(s.key, s.agent_id)])
    n = scale.envelopes * scale.agents
    cert, key = svc.issue(s.agent_id)
    outbox = tmp / f"{s.agent_id}.db"
    cmd = [sys.executable, "-m", "wattrail.commands.chaos", "agent-proc", "--outbox", str(outbox),
           "--agent-id", s.agent_id, "--key-byte", "70", "--envelopes", str(n),
           "--readings", str(scale.readings), "--interval", str(scale.agent_interval),
           "--host", svc.host, "--port", str(svc.port),
           "--ca", str(svc.ca), "--cert", str(cert), "--key", str(key)]

    def spawn() -> subprocess.Popen[bytes]:
        with open(svc.logs / "agent-proc.log", "ab") as log:
            return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)

    t0 = time.monotonic()
    ing = svc.ingestor(dsn, f"ak{uuid.uuid4().hex[:6]}")
    torn = 0
    try:
        for _ in range(scale.agent_kills):
            p = spawn()
            time.sleep(rng.uniform(0.8, 1.6))
            p.send_signal(signal.SIGKILL)
            p.wait()
            torn += tear_wal(outbox, rng)
        p = spawn()
        try:
            rc = p.wait(120 + n / 20)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        if rc != 0:
            r.notes.append(f"final agent run exited {rc}")
    finally:
        _stop([ing])
    r.seconds = time.monotonic() - t0
    r.notes.append(f"{scale.agent_kills} agent SIGKILLs, {torn} torn WAL tails")
    return check(dsn, {s.agent_id: s.chain(n)}, scale.readings, r)


def run_agent_proc(outbox: Path, agent_id: str, key_byte: int, envelopes: int, readings: int,
                   interval: float, broker: Any) -> int:
    """The agent subprocess of `agent-kill`: continue the chain from what the outbox holds,
    publish until the cloud confirmed everything, exit 0."""
    from edge.outbox import Outbox
    from edge.publisher import Publisher

    s = Signer(agent_id, key_from_byte(key_byte), readings)
    ob = Outbox(outbox)
    pub = Publisher(agent_id, broker, ob, resend_after=1.5, backoff_cap=0.5)
    pub.start()
    while True:
        head = ob.head()
        if head.seq >= envelopes:
            break
        ob.append(head.seq + 1, s.envelope(head.seq + 1, head.envelope_hash), 0)
        pub.notify()
        time.sleep(interval)
    while ob.depth:
        time.sleep(0.05)
    pub.stop()
    ob.close()
    return 0


def scenario_partition(svc: Services, scale: Scale, tmp: Path) -> Result:
    """Agents reach the broker through a TCP proxy that turns into a black hole (bytes stop,
    nothing is closed: a severed link) while they keep signing (a long
    simulated outage: each envelope is one poll cycle), then healed: the backlog must drain,
    in seq order, much faster than real time."""
    from wattrail.netproxy import TcpProxy  # the cuttable proxy the tests use too

    r = Result("partition")
    sigs = signers("np", scale.agents, scale.readings, first_key=90)
    dsn = svc.new_db([cert_for(s.key, s.agent_id) for s in sigs])
    live = 20
    backlog = scale.partition_backlog
    chains = {s.agent_id: s.chain(live + backlog) for s in sigs}
    proxy = TcpProxy(svc.host, svc.port)
    t0 = time.monotonic()
    ing = svc.ingestor(dsn, f"np{uuid.uuid4().hex[:6]}", max_batch=256)
    fleet = start_fleet(svc, sigs, tmp, prefill=0, port=proxy.port)
    try:
        for s, ob, pub in zip(sigs, fleet.outboxes, fleet.publishers, strict=True):
            for seq in range(1, live + 1):
                ob.append(seq, chains[s.agent_id][seq - 1], 0)
            pub.notify()
        if not drained(fleet.outboxes, 60):
            r.notes.append("live phase did not drain")
        # a silent partition: packets vanish, nothing is closed; the agents learn it from
        # their keepalive (5 s) and then fail to reconnect until the link is back
        proxy.blackhole()
        cut_at = time.monotonic()
        for s, ob in zip(sigs, fleet.outboxes, strict=True):
            for seq in range(live + 1, live + backlog + 1):
                ob.append(seq, chains[s.agent_id][seq - 1], 0)
        time.sleep(max(0.0, scale.partition_hold_s - (time.monotonic() - cut_at)))
        stored_during = _count(dsn, "envelopes") - live * scale.agents
        reconnects_before = sum(p.stats.connects for p in fleet.publishers)
        healed = time.monotonic()
        proxy.restore()
        if not drained(fleet.outboxes, 120 + backlog * scale.agents / 20):
            r.notes.append("backlog did not drain")
        drain_s = time.monotonic() - healed
        reconnects = sum(p.stats.connects for p in fleet.publishers) - reconnects_before
        attempts = sum(p.stats.connect_attempts for p in fleet.publishers)
    finally:
        fleet.stop()
        _stop([ing])
        proxy.close()
    r.seconds = time.monotonic() - t0
    n_back = backlog * scale.agents
    with psycopg.connect(dsn) as c:
        out_of_order = c.execute(
            "SELECT count(*) FROM (SELECT received_at < lag(received_at) OVER "
            "(PARTITION BY agent_id ORDER BY seq) AS back FROM envelopes) x WHERE back"
        ).fetchone()
    r.figures = {"backlog_envelopes": n_back, "drain_s": round(drain_s, 2),
                 "stored_during_partition": stored_during, "reconnects_after_heal": reconnects,
                 "connect_attempts": attempts,
                 "envelopes_per_s": round(n_back / drain_s, 1),
                 "readings_per_s": round(n_back * scale.readings / drain_s, 1),
                 "x_real_time": round(n_back / scale.agents * POLL_INTERVAL_S / drain_s, 1),
                 "out_of_order": int(out_of_order[0]) if out_of_order else -1}
    r.notes.append(f"backlog {n_back} env drained in {drain_s:.1f} s "
                   f"({r.figures['x_real_time']}x real time at 15 s polls), "
                   f"{r.figures['out_of_order']} stored out of seq order; {stored_during} stored "
                   f"during the {scale.partition_hold_s:.0f} s black hole, {reconnects} reconnects "
                   "after healing (the agents had declared the silent link dead)")
    return check(dsn, chains, scale.readings, r)


def agent_config(svc: Services, s: Signer, tmp: Path, **settings: Any) -> AgentConfig:
    """A real edge Agent's configuration for `s`: its signing key on disk, a TLS identity from
    the services' CA, an outbox under `tmp`, no meters (the scenario seals readings itself)."""
    from edge.config import AgentConfig, BrokerSettings

    keyf = tmp / f"{s.agent_id}.key"
    save_private_key(s.key, keyf)
    cert, key = svc.issue(s.agent_id)
    return AgentConfig(agent_id=s.agent_id, meters=[], signing_key=keyf,
                       outbox=tmp / f"{s.agent_id}.db", **settings,
                       broker=BrokerSettings(host=svc.host, port=svc.port, ca=svc.ca, cert=cert,
                                             key=key, resend_after_s=1.5, backoff_cap_s=0.5))


def _count(dsn: str, table_name: str) -> int:
    with psycopg.connect(dsn) as c:
        row = c.execute(f"SELECT count(*) FROM {table_name}").fetchone()
    return int(row[0]) if row else 0


def scenario_outbox_full(svc: Services, scale: Scale, tmp: Path) -> Result:
    """The real edge Agent seals into a small outbox while no ingestor confirms: once full it
    refuses new cycles with an `outbox-full` alarm on `events`, and every envelope it did
    sign is stored once an ingestor appears."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge.agent import Agent

    r = Result("outbox-full")
    (s,) = signers("of", 1, scale.readings, first_key=110)
    now = int(time.time() * 1000)
    dsn = svc.new_db([cert_for(s.key, s.agent_id, valid_from_ms=now - DAY,
                               valid_to_ms=now + 30 * DAY)])
    cfg = agent_config(svc, s, tmp, outbox_max_messages=scale.outbox_limit)
    # a watcher on the agent's events topic (the ingestor identity may read every agent's)
    events: list[dict[str, Any]] = []
    icert, ikey = svc.issue("wattrail-ingestor")
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{uuid.uuid4().hex[:6]}",
                          protocol=mqtt.MQTTv5)
    watcher.tls_set(ca_certs=str(svc.ca), certfile=str(icert), keyfile=str(ikey))
    subscribed = threading.Event()
    watcher.on_connect = lambda c, *_a: c.subscribe(f"wattrail/v1/{s.agent_id}/events", qos=1)
    watcher.on_subscribe = lambda *_a: subscribed.set()
    watcher.on_message = lambda _c, _u, m: events.append(json.loads(m.payload))
    watcher.connect(svc.host, svc.port)
    watcher.loop_start()
    t0 = time.monotonic()
    agent = Agent(cfg)
    agent.publisher.start()
    ing = None
    try:
        subscribed.wait(10)
        readings = [Reading(f"{s.agent_id}-m{i}", 0, import_wh=1.0) for i in range(scale.readings)]
        for cycle in range(scale.outbox_limit + scale.refused):
            agent.seal([Reading(x.meter_id, T0 + cycle * 1000, import_wh=1.0 + cycle)
                        for x in readings])
        signed = [p.data for p in agent.outbox.pending(0, scale.outbox_limit + 10)]
        refused = agent.stats.refused_full
        wait_until(lambda: sum(e.get("event") == "outbox-full" for e in events) >= refused, 10)
        alarms = sum(e.get("event") == "outbox-full" for e in events)
        ing = svc.ingestor(dsn, f"of{uuid.uuid4().hex[:6]}")
        if not drained([agent.outbox], 60):
            r.notes.append("outbox did not drain")
        seq_after = agent.seal([Reading(x.meter_id, T0 + 10**7, import_wh=9.0) for x in readings])
        if seq_after is not None:
            signed += [p.data for p in agent.outbox.pending(seq_after - 1, 1)]
        drained([agent.outbox], 30)
    finally:
        agent.publisher.stop()
        agent.outbox.close()
        watcher.loop_stop()
        watcher.disconnect()
        if ing is not None:
            _stop([ing])
    r.seconds = time.monotonic() - t0
    r.figures = {"refused_cycles": refused, "alarms_on_events": alarms,
                 "signed_envelopes": len(signed), "accepted_after_drain": int(seq_after is not None)}
    r.notes.append(f"{refused} cycles refused ({refused * scale.readings} readings never signed), "
                   f"{alarms} outbox-full alarms on events, sealing resumed after the drain: "
                   f"{seq_after is not None}")
    return check(dsn, {s.agent_id: signed}, scale.readings, r)


def scenario_ingestor_kill(svc: Services, scale: Scale, tmp: Path, seed: int = 3) -> Result:
    """Two ingestors share the stream; one after the other they die. Odd rounds: an ingestor
    that exits inside its transaction, rows written and not committed (mid-batch); even rounds:
    one that exits right after its commit, before any broker ack or agent ack (the worst moment;
    both started through wattrail/chaos_ingest.py); and a plain SIGKILL at a random moment in
    between.
    Redelivery must neither lose (mid-batch) nor duplicate (after commit)."""
    from wattrail.chaos_ingest import EXIT_AFTER_COMMIT, EXIT_MID_BATCH

    r = Result("ingestor-kill")
    rng = random.Random(seed)
    sigs = signers("ik", scale.agents, scale.readings, first_key=130)
    dsn = svc.new_db([cert_for(s.key, s.agent_id) for s in sigs])
    chains = {s.agent_id: s.chain(scale.envelopes) for s in sigs}
    group = f"ik{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    ings = [svc.ingestor(dsn, group, max_batch=16) for _ in range(2)]
    for p in ings:
        svc.wait_subscribed(p)
    fleet = start_fleet(svc, sigs, tmp, prefill=0)
    feeder = Feeder(fleet, chains, seconds=scale.ingestor_kills * 2.0)
    feeder.start()
    exits = {"mid_batch": 0, "after_commit": 0, "sigkill": 0}
    spare: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(scale.ingestor_kills):
            slot = i % 2
            time.sleep(rng.uniform(0.2, 0.6))
            ings[slot].kill()  # the plain SIGKILL, at whatever moment this is
            ings[slot].wait()
            exits["sigkill"] += 1
            point, code, kind = (("mid-batch", EXIT_MID_BATCH, "mid_batch") if i % 2 == 0
                                 else ("after-commit", EXIT_AFTER_COMMIT, "after_commit"))
            # the stream waits for the dying ingestor to subscribe: on a loaded machine its
            # start-up could otherwise outlast the stream, and it would never get its batches
            feeder.go.clear()
            dying = svc.ingestor(dsn, group, max_batch=16, crash=(point, rng.randint(1, 3)))
            try:
                svc.wait_subscribed(dying, timeout=120.0)
            finally:
                feeder.go.set()
            try:
                rc = dying.wait(120)
            except subprocess.TimeoutExpired:  # the stream ended before it got its batches
                spare.append(dying)
                rc = None
            exits[kind] += rc == code
            ings[slot] = svc.ingestor(dsn, group, max_batch=16)
        feeder.join()
        if not drained(fleet.outboxes, 120 + scale.envelopes * scale.agents / 50):
            r.notes.append("outboxes did not drain")
    finally:
        feeder.stop()
        fleet.stop()
        _stop(ings + spare)
    r.seconds = time.monotonic() - t0
    r.figures = {k: float(v) for k, v in exits.items()}
    r.notes.append(f"{exits['sigkill']} ingestor SIGKILLs, {exits['mid_batch']} exits inside an "
                   f"uncommitted batch, {exits['after_commit']} exits between commit and ack")
    return check(dsn, chains, scale.readings, r)


def scenario_db_crash(svc: Services, scale: Scale, tmp: Path, seed: int = 4) -> Result:
    """PostgreSQL stopped with `pg_ctl -m immediate` (no checkpoint, as a power cut would leave
    it: recovery replays the WAL) while agents stream, then started again. Every envelope an
    agent had seen acknowledged before the crash must be in the database after it; in the end,
    everything signed."""
    r = Result("db-crash")
    rng = random.Random(seed)
    sigs = signers("dc", scale.agents, scale.readings, first_key=150)
    dsn = svc.new_db([cert_for(s.key, s.agent_id) for s in sigs])
    chains = {s.agent_id: s.chain(scale.envelopes) for s in sigs}
    t0 = time.monotonic()
    ing = svc.ingestor(dsn, f"dc{uuid.uuid4().hex[:6]}")
    svc.wait_subscribed(ing)
    fleet = start_fleet(svc, sigs, tmp, prefill=0)
    feeder = Feeder(fleet, chains, seconds=scale.db_crashes * 5.0)
    feeder.start()
    acked_then_missing, acked_total, mid = 0, 0, 0
    try:
        for _ in range(scale.db_crashes):
            time.sleep(rng.uniform(1.0, 2.5))
            confirmed = {s.agent_id: ob.confirmed_seq()
                         for s, ob in zip(sigs, fleet.outboxes, strict=True)}
            mid += not feeder.done.is_set()
            svc.restart_db(immediate=True, down_for=rng.uniform(1.0, 3.0))
            with psycopg.connect(dsn) as c:  # what was acknowledged survived the crash
                for agent_id, upto in confirmed.items():
                    (n,) = c.execute("SELECT count(*) FROM envelopes WHERE agent_id = %s "  # type: ignore[misc]
                                     "AND seq <= %s", [agent_id, upto]).fetchone()
                    acked_total += upto
                    acked_then_missing += upto - int(n)
        feeder.join()
        if not drained(fleet.outboxes, 120 + scale.envelopes * scale.agents / 50):
            r.notes.append("outboxes did not drain")
        if ing.poll() is not None:
            r.notes.append(f"ingestor exited with {ing.returncode}")
    finally:
        feeder.stop()
        fleet.stop()
        _stop([ing])
    r.seconds = time.monotonic() - t0
    r.lost += acked_then_missing * scale.readings
    r.figures = {"crashes": scale.db_crashes, "crashes_mid_stream": mid,
                 "acked_before_crash": acked_total, "acked_then_missing": acked_then_missing}
    r.notes.append(f"{scale.db_crashes} immediate shutdowns ({mid} mid-stream); {acked_total} "
                   f"envelopes acknowledged before a crash, {acked_then_missing} of them missing after")
    res = check(dsn, chains, scale.readings, r)
    return res


def scenario_disk_full(svc: Services, scale: Scale, tmp: Path) -> Result:
    """The database's disk fills up mid-stream (its tablespace is a small tmpfs, filled by a
    runaway file until PostgreSQL says 'could not extend file'): the ingestor must stop
    acknowledging, keep running, and resume by itself once space is freed, losing nothing."""
    r = Result("disk-full")
    sigs = signers("df", scale.agents, scale.readings, first_key=170)
    dsn = svc.new_db([cert_for(s.key, s.agent_id) for s in sigs])
    disk, disk_here = svc.small_disk(scale.disk_mb)
    n = scale.envelopes
    third = n // 3
    chains = {s.agent_id: s.chain(n) for s in sigs}
    space = f"small_{uuid.uuid4().hex[:6]}"
    loc = f"{disk}/{space}"
    svc.mkdir_for_postgres(loc)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE TABLESPACE {space} LOCATION '{loc}'")
        # everything the ingestor writes lives on the small disk
        c.execute("SELECT attach_tablespace(%s, 'readings')", [space])
        c.execute(f"ALTER TABLE envelopes SET TABLESPACE {space}")
        c.execute(f"ALTER INDEX ALL IN TABLESPACE pg_default OWNED BY CURRENT_USER "
                  f"SET TABLESPACE {space}")
    t0 = time.monotonic()
    ing = svc.ingestor(dsn, f"df{uuid.uuid4().hex[:6]}")
    svc.wait_subscribed(ing)
    fleet = start_fleet(svc, sigs, tmp, prefill=0)

    def feed(lo: int, hi: int) -> None:
        for s, ob, pub in zip(sigs, fleet.outboxes, fleet.publishers, strict=True):
            for seq in range(lo, hi + 1):
                ob.append(seq, chains[s.agent_id][seq - 1], 0)
            pub.notify()

    try:
        feed(1, third)
        if not drained(fleet.outboxes, 60):
            r.notes.append("first phase did not drain")
        filled_mb = fill_disk(disk_here / "filler")
        before = _count(dsn, "envelopes")
        feed(third + 1, 2 * third)
        time.sleep(4.0)
        depth_while_full = sum(ob.depth for ob in fleet.outboxes)
        stored_while_full = _count(dsn, "envelopes") - before
        alive = ing.poll() is None
        (disk_here / "filler").unlink()  # a runaway log file, deleted by the operator
        freed = time.monotonic()
        feed(2 * third + 1, n)
        ok = drained(fleet.outboxes, 120 + n * scale.agents / 50)
        recover_s = time.monotonic() - freed
        if not ok:
            r.notes.append("did not recover after the space was freed")
        if ing.poll() is not None:
            r.notes.append(f"ingestor exited with {ing.returncode}")
    finally:
        fleet.stop()
        _stop([ing])
    r.seconds = time.monotonic() - t0
    r.figures = {"filled_mb": filled_mb, "unacked_while_full": depth_while_full,
                 "stored_while_full": stored_while_full, "ingestor_alive_while_full": int(alive),
                 "recovered_in_s": round(recover_s, 1)}
    r.notes.append(f"tablespace on a {scale.disk_mb} MiB tmpfs, filled by another file "
                   f"({filled_mb:.0f} MiB); while "
                   f"full {depth_while_full} envelopes stayed unacknowledged in the outboxes, "
                   f"{stored_while_full} were stored, ingestor alive: {alive}; drained "
                   f"{recover_s:.1f} s after the space was freed")
    return check(dsn, chains, scale.readings, r)


def fill_disk(path: Path) -> float:
    """Write `path` until its file system is full; MiB written."""
    chunk = os.urandom(1 << 20)
    written = 0
    with open(path, "wb") as fh:
        try:
            while True:
                written += fh.write(chunk)
                fh.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return written / 2**20


CLOCK_POLL_MS = 300_000


def clock_collisions(scale: Scale) -> int:
    """Readings clock-jump stamps with an instant already used: the -1 h phase's first cycles
    repeat the +1 h phase's last ones (12 cycles of 5 min), every meter each time."""
    return min(scale.clock_envelopes, 3_600_000 // CLOCK_POLL_MS) * scale.readings


def scenario_clock_jump(svc: Services, scale: Scale, tmp: Path) -> Result:
    """The real edge Agent seals with a wall clock that jumps +1 h, then back -1 h, while its
    monotonic clock runs on: the envelope sealed after each step carries clock status JUMPED,
    the cloud records it, and nothing else changes: every envelope stored, in seq order, no
    quarantine even though sent_at goes backwards."""
    from edge.agent import Agent, ClockWatch

    r = Result("clock-jump")
    (s,) = signers("cj", 1, scale.readings, first_key=190)
    now = int(time.time() * 1000)
    dsn = svc.new_db([cert_for(s.key, s.agent_id,
                               valid_from_ms=now - 3 * scale.clock_envelopes * CLOCK_POLL_MS - DAY,
                               valid_to_ms=now + 30 * DAY)])
    cfg = agent_config(svc, s, tmp)
    # one poll cycle = 5 min of monotonic time: after the -1 h step the agent stamps 12 cycles'
    # readings with instants it already used during the +1 h phase, which the cloud must keep
    tick = {"mono": 0, "offset": 0}
    base = now - 3 * scale.clock_envelopes * CLOCK_POLL_MS - 3_600_000  # +1 h stays in the past

    def wall() -> int:
        return base + tick["mono"] + tick["offset"]

    agent = Agent(cfg, wall_ms=wall, clock=ClockWatch(wall=wall, mono=lambda: tick["mono"]))
    agent.publisher.start()
    t0 = time.monotonic()
    ing = svc.ingestor(dsn, f"cj{uuid.uuid4().hex[:6]}")
    signed: list[bytes] = []
    jumped_seqs: list[int] = []
    try:
        for phase, offset in enumerate((0, 3_600_000, 0)):
            tick["offset"] = offset
            for i in range(scale.clock_envelopes):
                tick["mono"] += CLOCK_POLL_MS
                # readings stamped by the agent's (wrong) wall clock, 3 s before sealing
                ts = wall() - 3_000
                seq = agent.seal([Reading(f"{s.agent_id}-m{k}", ts, import_wh=1.0 + len(signed))
                                  for k in range(scale.readings)])
                if seq is None:
                    raise RuntimeError("outbox refused a cycle")
                signed.append(agent.outbox.pending(seq - 1, 1)[0].data)
                if phase and i == 0:
                    jumped_seqs.append(seq)
        if not drained([agent.outbox], 60):
            r.notes.append("outbox did not drain")
    finally:
        agent.publisher.stop()
        agent.outbox.close()
        _stop([ing])
    r.seconds = time.monotonic() - t0
    with psycopg.connect(dsn) as c:
        flagged = [int(x) for (x,) in c.execute(
            "SELECT seq FROM envelopes WHERE clock_status = 2 ORDER BY seq")]
        backwards = c.execute(
            "SELECT count(*) FROM (SELECT sent_at < lag(sent_at) OVER (ORDER BY seq) AS b "
            "FROM envelopes) x WHERE b").fetchone()
        flagged_readings = c.execute(  # in readings, or kept aside because their instant was taken
            readings_sql.COUNT_FROM_CLOCK_FLAGGED).fetchone()
    r.figures = {"jumps": len(jumped_seqs), "flagged_envelopes": len(flagged),
                 "flagged_as_expected": int(flagged == jumped_seqs),
                 "flagged_readings": int(flagged_readings[0]) if flagged_readings else -1,
                 "sent_at_backwards": int(backwards[0]) if backwards else -1}
    r.notes.append(f"wall clock +1 h then -1 h: envelopes {flagged} flagged JUMPED (expected "
                   f"{jumped_seqs}), {r.figures['flagged_readings']} readings flagged through them, "
                   f"{r.figures['sent_at_backwards']} envelope(s) with sent_at before their "
                   "predecessor's, stored in seq order all the same; "
                   f"{clock_collisions(scale)} readings reuse an instant already taken")
    return check(dsn, {s.agent_id: signed}, scale.readings, r)


def scenario_bad_envelopes(svc: Services, scale: Scale, tmp: Path) -> Result:
    """Bad messages of nine kinds mixed into valid streams (wattrail/chaos_security.py)."""
    from wattrail.chaos_security import scenario_bad_envelopes as run

    return run(svc, scale, tmp)


SCENARIOS: dict[str, Callable[..., Result]] = {
    "broker-kill": scenario_broker_kill,
    "agent-kill": scenario_agent_kill,
    "partition": scenario_partition,
    "outbox-full": scenario_outbox_full,
    "ingestor-kill": scenario_ingestor_kill,
    "db-crash": scenario_db_crash,
    "disk-full": scenario_disk_full,
    "clock-jump": scenario_clock_jump,
    "bad-envelopes": scenario_bad_envelopes,
}


def table(results: list[Result]) -> str:
    head = ("scenario", "expected", "stored", "lost", "duplicated", "quarantined", "gaps", "s")
    rows = [head] + [(r.scenario, str(r.expected), str(r.stored), str(r.lost), str(r.duplicated),
                      str(r.quarantined), str(r.gaps), f"{r.seconds:.1f}") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
             for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in results:
        lines.append(f"- {r.scenario}: " + "; ".join(r.notes))
    return "\n".join(lines)
