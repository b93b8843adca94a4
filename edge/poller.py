"""One poll cycle: read every meter over its link, decode, and flag the quality of each reading.

Every configured meter yields exactly one reading per cycle, so a silent meter is visible in
the data rather than absent from it: COMMS_LOST (no answer) and DECODE_ERROR (an exception
code, or words that do not decode) carry the meter id and time and *no* measured values.
Nothing is carried over from an earlier cycle (DESIGN.md: missing is missing).

When each meter is asked (staggered link phases, circuit breakers, bus budgets) is decided by
`edge/scheduler.py`; this module does the asking and keeps the per-meter and per-link counts
the health endpoint exports.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.config import MeterConfig
from edge.delivery import BreakerState
from edge.modbus_io import CommsLost, Link, MeterRefused
from edge.scheduler import Breaker, Decision, rtu_plan_seconds, stagger_offsets
from protocols.decode import FieldFailure, decode_reading
from protocols.errors import ProtocolError
from protocols.maps import get_map
from protocols.planner import Read, plan_reads
from protocols.reading import Quality, Reading

log = logging.getLogger("wattrail.edge.poller")


@dataclass(frozen=True)
class PollOutcome:
    reading: Reading
    failures: tuple[FieldFailure, ...] = ()
    error: str | None = None
    skipped: bool = False  # circuit open: not asked this cycle (the reading is COMMS_LOST)
    elapsed_s: float = 0.0  # time the meter's requests took on its link


@dataclass
class PollStats:
    cycles: int = 0
    readings: int = 0
    by_quality: Counter[str] = field(default_factory=Counter)
    last_cycle_s: float = 0.0
    # meter id -> result ("ok", "comms_lost", "decode_error", "skipped") -> count
    by_meter: dict[str, Counter[str]] = field(default_factory=dict)
    link_last_s: dict[str, float] = field(default_factory=dict)  # last cycle's busy time
    link_overruns: Counter[str] = field(default_factory=Counter)  # cycles longer than interval
    link_planned_s: dict[str, float] = field(default_factory=dict)  # RTU wire-time estimate
    over_budget: dict[str, float] = field(default_factory=dict)  # links whose plan cannot fit


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def link_name(link: tuple[str, str | int]) -> str:
    return f"{link[0]}://{link[1]}"


def result_of(o: PollOutcome) -> str:
    if o.skipped:
        return "skipped"
    return "ok" if o.reading.quality is Quality.VALID else o.reading.quality.name.lower()


class Poller:
    def __init__(self, meters: list[MeterConfig], *, timeout: float = 1.0, retries: int = 1,
                 max_gap: int = 8, clock_ms: Callable[[], int] = _now_ms,
                 interval_s: float | None = None, stagger_fraction: float = 0.0,
                 breaker_threshold: int = 3, breaker_base_s: float | None = None,
                 breaker_cap_s: float = 900.0, mono: Callable[[], float] = time.monotonic,
                 observe_latency: Callable[[str, float], None] | None = None) -> None:
        self.meters = meters
        self.clock_ms = clock_ms
        self.mono = mono
        self.timeout, self.retries = timeout, retries
        self.interval_s = interval_s
        self.stagger_fraction = stagger_fraction
        self.observe_latency = observe_latency
        # pymodbus binds a client to the running event loop, so links are made on first use
        self.links: dict[tuple[str, str | int], Link] = {}
        self.plans: dict[str, tuple[Read, ...]] = {}
        for m in meters:
            self.plans[m.id] = tuple(plan_reads(get_map(m.map), max_gap=max_gap))
        base = breaker_base_s if breaker_base_s is not None else 2 * (interval_s or 15.0)
        self.breakers = {m.id: Breaker(breaker_threshold, base, max(base, breaker_cap_s))
                         for m in meters}
        self.by_link: dict[tuple[str, str | int], list[MeterConfig]] = {}
        for m in meters:
            self.by_link.setdefault(m.link, []).append(m)
        self.stats = PollStats(by_meter={m.id: Counter() for m in meters})
        # breaker changes since the agent last looked, for the `events` topic
        self.breaker_events: list[dict[str, object]] = []
        self._check_budgets()

    def _check_budgets(self) -> None:
        """Warn now, not after a season of late readings, when a bus cannot carry its plan."""
        for key, ms in self.by_link.items():
            if key[0] != "rtu":
                continue  # a TCP gateway's bus speed is unknown; overruns are counted instead
            planned = sum(rtu_plan_seconds(self.plans[m.id], m.baudrate, m.parity) for m in ms)
            name = link_name(key)
            self.stats.link_planned_s[name] = planned
            if self.interval_s is not None and planned > self.interval_s:
                self.stats.over_budget[name] = planned
                log.warning(
                    "%s: %d meters need at least %.2f s of bus time per cycle at %d baud, more "
                    "than the %.2f s poll interval; readings will be late. Split the bus, raise "
                    "the baud rate or lengthen poll_interval_s", name, len(ms), planned,
                    ms[0].baudrate, self.interval_s)

    def _link(self, m: MeterConfig) -> Link:
        if m.link not in self.links:
            self.links[m.link] = Link(m.link[0], str(m.link[1]), timeout=self.timeout,
                                      retries=self.retries, baudrate=m.baudrate, parity=m.parity)
        return self.links[m.link]

    async def poll_meter(self, m: MeterConfig) -> PollOutcome:
        link = self._link(m)
        ts = self.clock_ms()
        started = time.perf_counter()
        try:
            words = await link.read(m.id, m.unit_id, self.plans[m.id])
        except CommsLost as exc:
            return PollOutcome(Reading(m.id, ts, quality=Quality.COMMS_LOST), error=str(exc),
                               elapsed_s=self._observe(link, started))
        except MeterRefused as exc:
            return PollOutcome(Reading(m.id, ts, quality=Quality.DECODE_ERROR), error=str(exc),
                               elapsed_s=self._observe(link, started))
        except ProtocolError as exc:  # a reply to another request: junk, never a reading
            return PollOutcome(Reading(m.id, ts, quality=Quality.DECODE_ERROR), error=str(exc),
                               elapsed_s=self._observe(link, started))
        elapsed = self._observe(link, started)
        try:
            decoded = decode_reading(get_map(m.map), self.plans[m.id], words, meter_id=m.id,
                                     ts_ms=ts)
        except ProtocolError as exc:  # the meter sent junk: count it, keep polling
            return PollOutcome(Reading(m.id, ts, quality=Quality.DECODE_ERROR), error=str(exc),
                               elapsed_s=elapsed)
        return PollOutcome(decoded.reading, decoded.failures, elapsed_s=elapsed)

    def _observe(self, link: Link, started: float) -> float:
        elapsed = time.perf_counter() - started
        if self.observe_latency is not None:
            self.observe_latency(link.name, elapsed)
        return elapsed

    def _skipped(self, m: MeterConfig, b: Breaker, now: float) -> PollOutcome:
        return PollOutcome(Reading(m.id, self.clock_ms(), quality=Quality.COMMS_LOST),
                           error=f"skipped: circuit open, next probe in {b.retry_at - now:.1f} s",
                           skipped=True)

    def _record(self, m: MeterConfig, o: PollOutcome) -> None:
        b = self.breakers[m.id]
        before = b.state
        after = b.record(o.reading.quality is not Quality.COMMS_LOST, self.mono())
        if after is before:
            return
        if after is BreakerState.OPEN:
            log.warning("meter %s: %d comms failures in a row (%s); circuit open, next probe in "
                        "%.1f s", m.id, b.failures, o.error, b.last_wait_s)
            self.breaker_events.append({"event": "meter-unreachable", "meter_id": m.id,
                                        "at_ms": o.reading.ts_ms, "failures": b.failures,
                                        "retry_in_s": round(b.last_wait_s, 3),
                                        "error": o.error})
        elif after is BreakerState.CLOSED:
            log.info("meter %s answers again; circuit closed", m.id)
            self.breaker_events.append({"event": "meter-recovered", "meter_id": m.id,
                                        "at_ms": o.reading.ts_ms})

    async def _poll_link(self, key: tuple[str, str | int], meters: list[MeterConfig],
                         offset_s: float) -> list[PollOutcome]:
        if offset_s > 0:
            await asyncio.sleep(offset_s)
        started = self.mono()
        out: dict[str, PollOutcome] = {}
        due: list[MeterConfig] = []
        probes: list[MeterConfig] = []
        for m in meters:
            d = self.breakers[m.id].decide(started)
            if d is Decision.SKIP:
                out[m.id] = self._skipped(m, self.breakers[m.id], started)
            else:
                (probes if d is Decision.PROBE else due).append(m)
        # one request at a time per bus; probes of tripped meters last, so that their likely
        # timeouts cannot make the healthy meters' readings late
        for m in due + probes:
            o = await self.poll_meter(m)
            self._record(m, o)
            out[m.id] = o
        busy = self.mono() - started
        name = link_name(key)
        self.stats.link_last_s[name] = busy
        if self.interval_s is not None and busy + offset_s > self.interval_s:
            self.stats.link_overruns[name] += 1
            n = self.stats.link_overruns[name]
            if n == 1 or n % 100 == 0:  # say it, but do not flood the log every cycle
                log.warning("%s: a poll cycle took %.2f s, more than the %.2f s interval (%d "
                            "times so far)", name, busy + offset_s, self.interval_s, n)
        return [out[m.id] for m in meters]

    async def poll_all(self) -> list[PollOutcome]:
        started = time.monotonic()
        interval = self.interval_s or 0.0
        offsets = stagger_offsets(len(self.by_link), interval, self.stagger_fraction)
        groups = await asyncio.gather(*(self._poll_link(key, ms, off) for (key, ms), off
                                        in zip(self.by_link.items(), offsets, strict=True)))
        outcomes = [o for g in groups for o in g]
        self.stats.cycles += 1
        self.stats.readings += len(outcomes)
        for o in outcomes:
            self.stats.by_quality[o.reading.quality.name.lower()] += 1
            self.stats.by_meter[o.reading.meter_id][result_of(o)] += 1
            if o.error:
                log.debug("%s: %s", o.reading.meter_id, o.error)
        self.stats.last_cycle_s = time.monotonic() - started
        return outcomes

    def close(self) -> None:
        for link in self.links.values():
            link.close()
