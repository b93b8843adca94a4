"""The edge agent: every poll interval, read all meters, seal the readings into one signed,
hash-chained envelope, keep it in the outbox and let the publisher deliver it.

    poll (edge/poller) -> Payload(seq = head+1, prev = hash(head)) -> COSE_Sign1 (Ed25519)
      -> outbox.append (fsync'd, atomically with the chain head) -> publisher.notify

Sealing takes the chain head from the outbox, so after a crash or a kill -9 the next envelope
continues exactly from what the disk holds. A full outbox refuses the cycle's envelope: the
readings of that cycle are not signed (there is nowhere durable to keep them), an alarm is
raised (log, metric, `events` topic), and nothing already signed is touched.

Cycles are aligned to wall-clock multiples of the interval (xx:00, xx:15, ...) so that all
agents read at the same instants, which is what the energy balance needs; within a cycle the
links start a little apart and dead meters are skipped (edge/scheduler.py).

After each cycle, status-flag changes (edge/events.py) and circuit-breaker changes go to the
`events` topic; the health endpoint (edge/health.py) serves the agent's metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.config import AgentConfig
from edge.events import StatusWatch
from edge.health import Health
from edge.outbox import Outbox, OutboxFullError
from edge.poller import Poller
from edge.publisher import BrokerConfig, Publisher
from protocols.envelope import ClockStatus, Payload, encode_payload
from protocols.reading import Reading
from security.keys import key_id, load_private_key, sign_envelope

log = logging.getLogger("wattrail.edge.agent")

JUMP_THRESHOLD_MS = 2_000  # wall vs monotonic disagreement that counts as a clock step


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _mono_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class ClockWatch:
    """Flags envelopes sealed after the wall clock stepped (NTP correction, manual change):
    readings across a step cannot be compared by timestamp alone, ordering by seq still holds."""

    def __init__(self, wall: Callable[[], int] = _wall_ms, mono: Callable[[], int] = _mono_ms,
                 synced: bool = True) -> None:
        self.wall, self.mono, self.synced = wall, mono, synced
        self._last: tuple[int, int] | None = None
        self.jumps = 0

    def status(self) -> ClockStatus:
        now = (self.wall(), self.mono())
        jumped = False
        if self._last is not None:
            drift = (now[0] - self._last[0]) - (now[1] - self._last[1])
            jumped = abs(drift) > JUMP_THRESHOLD_MS
        self._last = now
        if jumped:
            self.jumps += 1
            return ClockStatus.JUMPED
        return ClockStatus.SYNCED if self.synced else ClockStatus.UNSYNCED


@dataclass
class AgentStats:
    sealed: int = 0
    refused_full: int = 0
    last_seq: int = 0
    events: int = 0


class Agent:
    def __init__(self, cfg: AgentConfig, *, wall_ms: Callable[[], int] = _wall_ms,
                 clock: ClockWatch | None = None) -> None:
        self.cfg = cfg
        self.wall_ms = wall_ms
        self.clock = clock or ClockWatch(wall=wall_ms)
        self.key = load_private_key(cfg.signing_key)
        self.kid = key_id(self.key)
        if cfg.key_id is not None and bytes.fromhex(cfg.key_id) != self.kid:
            raise ValueError(f"key_id {cfg.key_id} in the configuration does not match "
                             f"{cfg.signing_key} (its id is {self.kid.hex()})")
        self.outbox = Outbox(cfg.outbox, max_messages=cfg.outbox_max_messages,
                             max_bytes=cfg.outbox_max_bytes)
        self.health = Health(self)
        self.poller = Poller(cfg.meters, timeout=cfg.modbus_timeout_s,
                             retries=cfg.modbus_retries, max_gap=cfg.max_gap, clock_ms=wall_ms,
                             interval_s=cfg.poll_interval_s,
                             stagger_fraction=cfg.stagger_fraction,
                             breaker_threshold=cfg.breaker_threshold,
                             breaker_base_s=cfg.breaker_base_s, breaker_cap_s=cfg.breaker_cap_s,
                             # breaker waits on the agent's clock, which a simulation may speed up
                             mono=lambda: self.clock.mono() / 1000,
                             observe_latency=self.health.observe)
        b = cfg.broker
        self.publisher = Publisher(
            cfg.agent_id, BrokerConfig(b.host, b.port, b.ca, b.cert, b.key, b.keepalive_s,
                                       b.session_expiry_s),
            self.outbox, resend_after=b.resend_after_s, backoff_cap=b.backoff_cap_s)
        self.status_watch = StatusWatch()
        self.stats = AgentStats(last_seq=self.outbox.head().seq)

    def seal(self, readings: list[Reading]) -> int | None:
        """Sign `readings` as the next envelope and store it. The new seq, or None if the
        outbox is full (alarm raised, nothing stored)."""
        head = self.outbox.head()
        sent_at = self.wall_ms()
        payload = Payload(self.cfg.agent_id, self.kid, head.seq + 1, head.envelope_hash,
                          sent_at, self.clock.status(), readings)
        data = sign_envelope(self.key, self.kid, encode_payload(payload))
        try:
            self.outbox.append(payload.seq, data, sent_at)
        except OutboxFullError as exc:
            self.stats.refused_full += 1
            log.error("ALARM %s", exc)
            self.raise_event({"event": "outbox-full", "at_ms": sent_at, "depth": exc.depth,
                              "refused_readings": len(readings)})
            return None
        self.stats.sealed += 1
        self.stats.last_seq = payload.seq
        self.publisher.notify()
        return payload.seq

    def raise_event(self, event: dict[str, object]) -> None:
        self.stats.events += 1
        self.publisher.publish_event(json.dumps({"agent_id": self.cfg.agent_id, **event},
                                                separators=(",", ":")).encode())

    async def cycle(self) -> int | None:
        outcomes = await self.poller.poll_all()
        readings = [o.reading for o in outcomes]
        seq = self.seal(readings)
        for event in self.status_watch.changes(readings):
            log.warning("%s on meter %s: %s", event["event"], event["meter_id"],
                        ", ".join(event["flags"]))
            self.raise_event(event)
        events, self.poller.breaker_events = self.poller.breaker_events, []
        for event in events:
            self.raise_event(event)
        return seq

    async def run(self, stop: asyncio.Event, *, cycles: int | None = None) -> None:
        """Poll on aligned ticks until `stop` is set (or `cycles` cycles ran)."""
        if self.cfg.health_port is not None:
            port = self.health.start(self.cfg.health_host, self.cfg.health_port)
            log.info("metrics on http://%s:%d/metrics", self.cfg.health_host, port)
        self.publisher.start()
        interval_ms = int(self.cfg.poll_interval_s * 1000)
        done = 0
        try:
            while not stop.is_set() and (cycles is None or done < cycles):
                now = self.wall_ms()
                next_tick = (now // interval_ms + 1) * interval_ms
                try:
                    await asyncio.wait_for(stop.wait(), timeout=(next_tick - now) / 1000)
                    break
                except TimeoutError:
                    pass
                await self.cycle()
                done += 1
        finally:
            self.close()

    def close(self) -> None:
        self.health.stop()
        self.publisher.stop()
        self.poller.close()
        self.outbox.close()
