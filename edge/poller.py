"""One poll cycle: read every meter over its link, decode, and flag the quality of each reading.

Every configured meter yields exactly one reading per cycle, so a silent meter is visible in
the data rather than absent from it: COMMS_LOST (no answer) and DECODE_ERROR (an exception
code, or words that do not decode) carry the meter id and time and *no* measured values.
Nothing is carried over from an earlier cycle (DESIGN.md: missing is missing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.config import MeterConfig
from edge.modbus_io import CommsLost, Link, MeterRefused
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


@dataclass
class PollStats:
    cycles: int = 0
    readings: int = 0
    by_quality: Counter[str] = field(default_factory=Counter)
    last_cycle_s: float = 0.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Poller:
    def __init__(self, meters: list[MeterConfig], *, timeout: float = 1.0, retries: int = 1,
                 max_gap: int = 8, clock_ms: Callable[[], int] = _now_ms) -> None:
        self.meters = meters
        self.clock_ms = clock_ms
        self.timeout, self.retries = timeout, retries
        # pymodbus binds a client to the running event loop, so links are made on first use
        self.links: dict[tuple[str, str | int], Link] = {}
        self.plans: dict[str, tuple[Read, ...]] = {}
        for m in meters:
            self.plans[m.id] = tuple(plan_reads(get_map(m.map), max_gap=max_gap))
        self.stats = PollStats()

    def _link(self, m: MeterConfig) -> Link:
        if m.link not in self.links:
            self.links[m.link] = Link(m.link[0], str(m.link[1]), timeout=self.timeout,
                                      retries=self.retries, baudrate=m.baudrate, parity=m.parity)
        return self.links[m.link]

    async def poll_meter(self, m: MeterConfig) -> PollOutcome:
        link = self._link(m)
        ts = self.clock_ms()
        try:
            words = await link.read(m.id, m.unit_id, self.plans[m.id])
        except CommsLost as exc:
            return PollOutcome(Reading(m.id, ts, quality=Quality.COMMS_LOST), error=str(exc))
        except MeterRefused as exc:
            return PollOutcome(Reading(m.id, ts, quality=Quality.DECODE_ERROR), error=str(exc))
        try:
            decoded = decode_reading(get_map(m.map), self.plans[m.id], words, meter_id=m.id,
                                     ts_ms=ts)
        except ProtocolError as exc:  # the meter sent junk: count it, keep polling
            return PollOutcome(Reading(m.id, ts, quality=Quality.DECODE_ERROR), error=str(exc))
        return PollOutcome(decoded.reading, decoded.failures)

    async def _poll_link(self, meters: list[MeterConfig]) -> list[PollOutcome]:
        return [await self.poll_meter(m) for m in meters]  # one request at a time per bus

    async def poll_all(self) -> list[PollOutcome]:
        started = time.monotonic()
        by_link: dict[tuple[str, str | int], list[MeterConfig]] = {}
        for m in self.meters:
            by_link.setdefault(m.link, []).append(m)
        groups = await asyncio.gather(*(self._poll_link(ms) for ms in by_link.values()))
        outcomes = [o for g in groups for o in g]
        self.stats.cycles += 1
        self.stats.readings += len(outcomes)
        for o in outcomes:
            self.stats.by_quality[o.reading.quality.name.lower()] += 1
            if o.error:
                log.debug("%s: %s", o.reading.meter_id, o.error)
        self.stats.last_cycle_s = time.monotonic() - started
        return outcomes

    def close(self) -> None:
        for link in self.links.values():
            link.close()
