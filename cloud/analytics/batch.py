"""One analysis batch: fetch a Feed from TimescaleDB -> pipeline.run -> store the Report.

`analyze` is what `wattrail analyze` and bench/analytics_batch.py call; it times the three
stages separately (fetch, kernels, write) and records the timing with the run.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numba
import numpy as np
import psycopg

from cloud.analytics.data.fetch import FetchStats, detect_cadence, fetch_feed
from cloud.analytics.data.vee_fill import fill_from_vee
from cloud.analytics.data.write import RunMeta, store_report
from cloud.analytics.kernels import config
from cloud.analytics.pipeline import stages as pipeline
from cloud.analytics.pipeline.derived import MIN_COMPLETENESS
from cloud.analytics.pipeline.feed import Feed
from cloud.analytics.pipeline.stages import Report

Progress = Callable[[str], None]  # called with the name of the stage about to start


@dataclass(frozen=True)
class RunResult:
    run_id: int
    feed: Feed
    report: Report
    fetch: FetchStats
    seconds: dict[str, float]  # fetch, kernels, write, total
    notes: tuple[str, ...] = ()  # the cadence, what the data lacked, what the run assumed


def parameters(step_s: int, tolerance_s: float | None) -> dict[str, Any]:
    """What a run's numbers depend on besides the data, stored with the run."""
    return {
        "step_s": step_s,
        "tolerance_s": step_s / 2 if tolerance_s is None else tolerance_s,
        "min_completeness": MIN_COMPLETENESS,
        "suspect_threshold": 0.5,
        "fastmath": config.FASTMATH,
        "numba": numba.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def analyze(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    *,
    step_s: int | None = None,
    regions: Sequence[str] | None = None,
    tolerance_s: float | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """`step_s` None: the readings' own cadence (`fetch.detect_cadence`), with a note when the
    meters have mixed cadences."""
    say = progress or (lambda _stage: None)
    started = datetime.now(UTC)
    t = time.perf_counter()
    notes: list[str] = []
    if step_s is None:
        say("cadence")
        cad = detect_cadence(conn, start, end)
        step_s = cad.step_s
        if cad.note():
            notes.append(str(cad.note()))
    say("fetch")
    feed, stats = fetch_feed(conn, start, end, step_s=step_s, regions=regions, tolerance_s=tolerance_s)
    # the post-VEE layer, where a VEE run covers the period (nothing changes otherwise)
    filled, vee_note = fill_from_vee(conn, feed)
    if vee_note:
        notes.append(vee_note)
    t_fetch = time.perf_counter() - t
    say("kernels")
    t = time.perf_counter()
    rep = pipeline.run(feed, day=86400 // step_s, block=max(1, 21600 // step_s),
                       vee_filled=filled)
    t_kernels = time.perf_counter() - t
    say("write")
    t = time.perf_counter()
    seconds = {"fetch": round(t_fetch, 3), "kernels": round(t_kernels, 3)}
    params = parameters(step_s, tolerance_s)
    # what the data lacked and what the run assumed instead, with the run (CLI, API, dashboard)
    params["notes"] = notes + list(rep.notes)
    if rep.inputs is not None:
        params["not_computed"] = rep.inputs.unavailable(feed.topology.has_pv)
    meta = RunMeta(start, end, list(regions) if regions else None, started, params, seconds)
    run_id = store_report(conn, feed, rep, meta)
    t_write = time.perf_counter() - t
    seconds = {**seconds, "write": round(t_write, 3), "total": round(t_fetch + t_kernels + t_write, 3)}
    return RunResult(run_id, feed, rep, stats, seconds, tuple(params["notes"]))
