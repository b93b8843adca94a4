"""When each meter is asked: staggered link phases, per-meter circuit breakers, bus budgets.

Pure code (no IO): the poller asks it what to do and tells it what happened.

- **Phases.** Links (buses, gateway connections) are polled concurrently, but not all at the
  same instant: link i of n starts `i/n * stagger_fraction * interval` after the tick, so the
  agent's decode work and a site's shared uplink see a spread load instead of a burst. The
  spread is a small fraction of the interval (default 10 %) because the energy balance wants
  readings close to the common tick; every reading keeps its own time stamp.
- **Circuit breaker** per meter (states and transitions in `edge/delivery.py`): a dead meter
  is skipped, still yielding a COMMS_LOST reading every cycle, and probed again after growing,
  jittered waits; the probe runs after the link's healthy meters.
- **Budget.** On an RTU link the wire time is predictable from the baud rate and the frame
  sizes (request 8 bytes; response 5 + 2 x registers; 3.5 character times of silence around
  each frame): at 9600 baud reading 80 registers takes ~0.2 s. If a link's planned requests
  cannot fit in the poll interval, the agent warns at start (log + metric); at run time a
  link whose cycle overran the interval is counted too, for TCP gateways whose bus is unknown.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from dataclasses import dataclass

from edge.delivery import BreakerEvent, BreakerState, breaker_retry_delay, next_breaker_state
from protocols.planner import Read

RTU_REQUEST_BYTES = 8  # unit, function, start (2), count (2), CRC (2)
RTU_RESPONSE_OVERHEAD = 5  # unit, function, byte count, CRC (2)
RTU_SILENCE_CHARS = 3.5  # the inter-frame gap that delimits RTU frames


def bits_per_char(parity: str = "N", stopbits: int = 1) -> int:
    """Start bit + 8 data bits + optional parity + stop bits (Modbus over serial line, 2.5.1)."""
    return 1 + 8 + (0 if parity == "N" else 1) + stopbits


def rtu_frame_bytes(read: Read) -> tuple[int, int]:
    """(request, response) bytes of one register read in RTU framing."""
    return RTU_REQUEST_BYTES, RTU_RESPONSE_OVERHEAD + 2 * read.count


def rtu_read_seconds(read: Read, baudrate: int, parity: str = "N", stopbits: int = 1) -> float:
    """Minimum bus time of one read: both frames and the silences that delimit them."""
    req, resp = rtu_frame_bytes(read)
    chars = req + resp + 2 * RTU_SILENCE_CHARS
    return chars * bits_per_char(parity, stopbits) / baudrate


def rtu_plan_seconds(reads: Iterable[Read], baudrate: int, parity: str = "N") -> float:
    return sum(rtu_read_seconds(r, baudrate, parity) for r in reads)


def stagger_offsets(n_links: int, interval_s: float, fraction: float) -> list[float]:
    """Start offsets (seconds after the tick) of n links: evenly spread over the first
    `fraction` of the interval."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"stagger fraction must be in [0, 1), got {fraction}")
    if n_links <= 0:
        return []
    window = interval_s * fraction
    return [window * i / n_links for i in range(n_links)]


class Decision(enum.Enum):
    POLL = "poll"  # breaker closed: poll in the link's normal order
    PROBE = "probe"  # breaker half-open: one try, after the link's healthy meters
    SKIP = "skip"  # breaker open: no request; the cycle gets a COMMS_LOST reading


@dataclass
class Breaker:
    """One meter's circuit breaker. `threshold` consecutive comms failures trip it; waits
    between probes start at `base_s` and double up to `cap_s`."""

    threshold: int = 3
    base_s: float = 30.0
    cap_s: float = 900.0
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0  # consecutive comms failures
    opens: int = 0  # consecutive trips without a success in between
    retry_at: float = 0.0  # monotonic seconds
    last_wait_s: float = 0.0
    skipped: int = 0
    rng: random.Random | None = None

    def decide(self, now: float) -> Decision:
        if self.state is BreakerState.OPEN and now >= self.retry_at:
            self.state = next_breaker_state(self.state, BreakerEvent.RETRY_DUE)
        if self.state is BreakerState.OPEN:
            self.skipped += 1
            return Decision.SKIP
        return Decision.PROBE if self.state is BreakerState.HALF_OPEN else Decision.POLL

    def record(self, ok: bool, now: float) -> BreakerState:
        """The outcome of a request; returns the new state."""
        if ok:
            self.failures = self.opens = 0
            self.state = next_breaker_state(self.state, BreakerEvent.SUCCESS)
            return self.state
        self.failures += 1
        tripping = self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold
        event = BreakerEvent.TRIP if tripping else BreakerEvent.FAILURE
        new = next_breaker_state(self.state, event)
        if new is BreakerState.OPEN and self.state is not BreakerState.OPEN:
            self.opens += 1
            self.last_wait_s = breaker_retry_delay(self.opens, base=self.base_s, cap=self.cap_s,
                                                   rng=self.rng)
            self.retry_at = now + self.last_wait_s
        self.state = new
        return new
