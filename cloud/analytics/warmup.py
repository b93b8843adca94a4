"""Compile every kernel once, on tiny inputs, before serving requests.

With `cache=True` the machine code lands in `__pycache__`; a fresh process then only loads it
(~milliseconds per kernel) instead of compiling (~seconds). Call `warm_up()` at API start-up
(or in the image build) so no request ever pays the compile time.
"""

from __future__ import annotations

import time

from cloud.analytics import (
    kernels_balance,
    kernels_forecast,
    kernels_intervals,
    kernels_loss,
    kernels_outage,
    kernels_quality,
    kernels_theft_meter,
    kernels_theft_pattern,
)

MODULES = (
    kernels_intervals,
    kernels_balance,
    kernels_loss,
    kernels_theft_meter,
    kernels_theft_pattern,
    kernels_quality,
    kernels_outage,
    kernels_forecast,
)


def warm_up() -> dict[str, float]:
    """Compile (or load from cache) every kernel; returns seconds per module."""
    took: dict[str, float] = {}
    for mod in MODULES:
        t = time.perf_counter()
        mod.warm_up()
        took[mod.__name__.rsplit(".", 1)[-1]] = time.perf_counter() - t
    return took
