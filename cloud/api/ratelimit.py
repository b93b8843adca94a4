"""Per-token rate limit: a token bucket per API token, in this process's memory.

A bucket holds up to `burst` requests and refills at `rate` per second; a request takes one or
is refused with the seconds until one is back (the 429's Retry-After). In memory on purpose:
no shared store to run, at the price that N API processes give a token N times the rate, and a
restart refills every bucket. Good enough to stop a runaway script; not a billing meter.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TokenBuckets:
    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst, self._clock, self._max_keys = rate, float(burst), clock, max_keys
        self._buckets: dict[int, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()  # routes may run in worker threads too

    def take(self, key: int) -> float:
        """Take one request from `key`'s bucket: 0.0 if allowed, else seconds to wait."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                if len(self._buckets) >= self._max_keys and key not in self._buckets:
                    self._buckets.clear()  # bounded memory; a full bucket is the default anyway
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))
