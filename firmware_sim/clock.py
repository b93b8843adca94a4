"""Simulated time: an accelerated wall clock for serving, a manual (lock-step) one for the demo,
the end-to-end tests and unit tests.

Accelerated:  simulated = start + speed x (real seconds elapsed since the clock was made)
Manual:       simulated = start + what `step()` / `advance_to()` added; frozen in between

The accelerated clock is for a simulator that other processes poll on their own schedule
(`wattrail sim`, the compose stack): it runs whether or not anyone keeps up, so on a loaded
machine readings land off their instants. The manual clock is what the demo drives in lock
step: it moves to the next poll instant only after every agent has finished and sealed its
cycle for the current one, so the same seed gives the same readings whatever the load.

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

    def advance_to(self, t_s: float) -> float:
        """Manual mode only: move simulated time forward to exactly `t_s` (never backwards)."""
        if not self.manual:
            raise RuntimeError("advance_to() needs SimClock(..., manual=True); this clock follows "
                               "real time")
        now = self.now()
        if t_s < now:
            raise ValueError(f"simulated time never runs backwards: at {now}, asked for {t_s}")
        self._offset = float(t_s) - self.start_s  # set, not added: no float drift over a run
        return self.now()

    def real_seconds_until(self, t_s: float) -> float:
        """How long to sleep (real seconds) until simulated time reaches t_s."""
        if self.manual:
            return 0.0
        return max(0.0, (t_s - self.now()) / self.speed)
