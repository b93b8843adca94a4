"""Compile every kernel once, on tiny inputs, before serving requests.

With `cache=True` the machine code lands in `__pycache__`; a fresh process then only loads it
(~milliseconds per kernel) instead of compiling (~seconds). Call `warm_up()` at API start-up
(or in the image build) so no request ever pays the compile time.
"""

from __future__ import annotations

import time

from cloud.analytics.kernels import (
    balance,
    forecast,
    intervals,
    loss,
    outage,
    quality,
    theft_meter,
    theft_pattern,
)

MODULES = (intervals, balance, loss, theft_meter, theft_pattern, quality, outage, forecast)


def warm_up() -> dict[str, float]:
    """Compile (or load from cache) every kernel; returns seconds per module."""
    took: dict[str, float] = {}
    for mod in MODULES:
        t = time.perf_counter()
        mod.warm_up()
        took[mod.__name__.rsplit(".", 1)[-1]] = time.perf_counter() - t
    return took
