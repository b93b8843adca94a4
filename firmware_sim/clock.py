"""Simulated time: an accelerated wall clock for serving, a manual one for tests.

    simulated = start + speed x (real seconds elapsed since the clock was made)

The real time source is monotonic, so NTP steps on the host never move simulated time
backwards (meters' energy registers must never run backwards because of the host).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SimClock:
    """Simulated Unix time in seconds.

    `manual=True` freezes time until `step()` moves it: tests get exact, repeatable instants.
    """

    def __init__(
        self,
        start_s: float,
        speed: float = 1.0,
        *,
        manual: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0 (simulated seconds per real second), got {speed}")
        self.start_s = float(start_s)
        self.speed = float(speed)
        self.manual = manual
        self._monotonic = monotonic
        self._t0 = monotonic()
        self._offset = 0.0  # manual mode: seconds stepped so far

    def now(self) -> float:
        if self.manual:
            return self.start_s + self._offset
        return self.start_s + self.speed * (self._monotonic() - self._t0)

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def step(self, seconds: float) -> float:
        """Manual mode only: move simulated time forward and return the new time."""
        if not self.manual:
            raise RuntimeError("step() needs SimClock(..., manual=True); this clock follows real time")
        if seconds < 0:
            raise ValueError("simulated time never runs backwards")
        self._offset += seconds
        return self.now()

    def real_seconds_until(self, t_s: float) -> float:
        """How long to sleep (real seconds) until simulated time reaches t_s."""
        if self.manual:
            return 0.0
        return max(0.0, (t_s - self.now()) / self.speed)
