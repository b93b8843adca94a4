"""What the campaign streams: deterministic signed chains (`Signer`: envelope N of an agent
always has the same bytes, Ed25519 being deterministic), the scales, and the fleets of real
edge Publishers + Outboxes that carry them, fed at a steady pace by a `Feeder`."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.envelope import GENESIS_PREV_HASH, ClockStatus, Payload, encode_payload, envelope_hash
from protocols.reading import Reading
from security.keyring import KeyCertificate
from security.keys import key_id, raw_public_key, save_private_key, sign_envelope

if TYPE_CHECKING:  # edge is imported where a scenario runs a real Agent, not at import
    from edge.config import AgentConfig
from wattrail.chaos.services import Services

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
