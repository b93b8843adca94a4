"""A VEE run over a local period: per time zone, per chunk of meters, read the intervals,
validate, estimate, apply manual edits, write the exceptions and the meter-day summary.

Chunks bound the memory (a month of 15-minute data is 2,976 intervals; 5,000 meters are
~120 MB per array) and let a caller (billing) compute on each chunk while it is in memory
(`on_chunk`). Progress is reported per chunk through `progress`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from cloud.mdm.calendar import Period, month_period, zone
from cloud.mdm.check_meter import chunk_checks
from cloud.mdm.estimation import Estimated, EstimateParams, Method, day_status, estimate
from cloud.mdm.fetch import Customers, Intervals, fetch_customers, fetch_intervals
from cloud.mdm.validation import Params, Rule, Validation, validate
from cloud.mdm.write import write_days, write_intervals
from cloud.store import mdm_sql


@dataclass
class Chunk:
    """One chunk of meters in memory after VEE."""

    customers: Customers
    period: Period  # the local period in this chunk's zone
    intervals: Intervals
    validation: Validation
    estimated: Estimated
    status: npt.NDArray[np.int8]  # (M, D) 0 valid / 1 estimated / 2 failed


@dataclass
class VeeRun:
    run_id: int
    period: str
    meters: int
    rules: dict[str, dict[str, Any]]
    days: dict[str, int]  # valid / estimated / failed meter-days
    exceptions: int  # rows in the post-VEE layer
    seconds: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)  # the balance meter as check meter


def _apply_manual(conn: psycopg.Connection[Any], ch_ids: list[str], iv: Intervals,
                  e: Estimated) -> int:
    """Manual edits are of 15-minute intervals: a run at a coarser step does not apply them
    (a quarter hour's energy is not a half hour's); docs/mdm.md says so."""
    s = iv.series
    if not s.ts_s.size or s.step_s != 900:
        return 0
    lo = datetime.fromtimestamp(int(s.ts_s[0]), UTC)
    hi = datetime.fromtimestamp(int(s.ts_s[-1]) + s.step_s, UTC)
    pos = {m: i for i, m in enumerate(ch_ids)}
    n = 0
    for mid, bucket, value, _version in conn.execute(mdm_sql.MANUAL_EDITS,
                                                     {"m": ch_ids, "lo": lo, "hi": hi}):
        j = (int(bucket.timestamp()) - int(s.ts_s[0])) // s.step_s
        e.value[pos[mid], j] = np.nan if value is None else value
        e.method[pos[mid], j] = Method.MANUAL
        n += 1
    return n


def _chunks(members: list[int], transformer_of: list[str], size: int) -> list[list[int]]:
    """`members` in chunks of about `size` meters that never split a transformer (the balance
    meter checks its customers together); a transformer larger than `size` is a chunk alone."""
    by_tx: dict[str, list[int]] = {}
    for i in members:
        by_tx.setdefault(transformer_of[i], []).append(i)
    out: list[list[int]] = []
    cur: list[int] = []
    for tx in sorted(by_tx):
        group = by_tx[tx]
        if cur and len(cur) + len(group) > size:
            out.append(cur)
            cur = []
        cur = cur + group
    if cur:
        out.append(cur)
    return out


def run_vee(conn: psycopg.Connection[Any], period: str, *, step_s: int = 900,
            regions: Sequence[str] | None = None, default_zone: str | None = None,
            params: Params | None = None, estimate_params: EstimateParams | None = None,
            chunk_meters: int = 5000, on_chunk: Callable[[Chunk], None] | None = None,
            progress: Callable[[int, int], None] | None = None) -> VeeRun:
    """VEE for the local month `period` ("YYYY-MM") of every customer meter (of `regions`)."""
    params = params or Params()
    estimate_params = estimate_params or EstimateParams(max_interpolate_s=params.max_interpolate_s)
    clock = time.perf_counter()
    seconds = {"read": 0.0, "intervals": 0.0, "vee": 0.0, "check_meter": 0.0, "write": 0.0,
               "on_chunk": 0.0}
    customers = fetch_customers(conn, regions, default_zone=default_zone)
    zones = sorted(set(customers.zones))
    periods = {z: month_period(period, zone(z)) for z in zones}
    start = min(p.start for p in periods.values()) if periods else month_period(period, zone("UTC")).start
    end = max(p.end for p in periods.values()) if periods else month_period(period, zone("UTC")).end
    row = conn.execute(mdm_sql.NEW_VEE_RUN, {
        "period": month_period(period, zone("UTC")).label, "start": start, "end": end,
        "step": step_s, "meters": len(customers),
        "params": json.dumps({**dataclasses.asdict(params),
                              **{f"estimate_{k}": v for k, v in
                                 dataclasses.asdict(estimate_params).items()}})}).fetchone()
    assert row is not None
    run_id = int(row[0])
    conn.commit()
    totals: dict[Rule, list[Any]] = {}
    days = np.zeros(3, np.int64)
    exceptions = 0
    done = 0
    balance_of = dict(conn.execute(mdm_sql.BALANCE_METERS).fetchall())
    checks: dict[str, Any] = {"intervals_checked": 0, "transformers_without_enough_data": 0}
    diffs: list[npt.NDArray[np.float64]] = []
    for z in zones:
        members = [i for i, cz in enumerate(customers.zones) if cz == z]
        for part in _chunks(members, customers.transformer_ids, chunk_meters):
            ch = customers.take(part)
            iv = fetch_intervals(conn, ch.meter_ids, periods[z].start, periods[z].end, step_s, z)
            seconds["read"] += iv.seconds["read"]
            seconds["intervals"] += iv.seconds["intervals"]
            t = time.perf_counter()
            v = validate(iv.series, params)
            e = estimate(iv.series, v, estimate_params, register_at=iv.register_at)
            _apply_manual(conn, ch.meter_ids, iv, e)
            st = day_status(iv.series, v, e)
            seconds["vee"] += time.perf_counter() - t
            t = time.perf_counter()
            est = np.isin(e.method, (Method.LINEAR, Method.LIKE_DAY, Method.LIKE_DAY_SCALED))
            check, short = chunk_checks(conn, iv, ch.meter_ids, ch.transformer_ids, balance_of,
                                        periods[z], z, est)
            ok = np.isfinite(check) & ~np.isnan(e.value)
            checks["intervals_checked"] += int(np.isfinite(check).sum())
            checks["transformers_without_enough_data"] += short
            diffs.append(np.abs(e.value[ok] - check[ok]))
            seconds["check_meter"] += time.perf_counter() - t
            t = time.perf_counter()
            exceptions += write_intervals(conn, run_id, ch.meter_ids, iv.series, v, e, check)
            write_days(conn, run_id, ch.meter_ids, iv.series, v, e, st)
            conn.commit()
            seconds["write"] += time.perf_counter() - t
            for o in v.outcomes:
                agg = totals.setdefault(o.rule, [o.ran, o.why_not, 0])
                agg[0] = agg[0] or o.ran
                agg[1] = agg[1] if o.ran else o.why_not
                agg[2] += o.failed
            days += np.bincount(st.reshape(-1), minlength=3)[:3]
            if on_chunk is not None:
                t = time.perf_counter()
                on_chunk(Chunk(ch, periods[z], iv, v, e, st))
                seconds["on_chunk"] += time.perf_counter() - t
            done += len(ch)
            if progress is not None:
                progress(done, len(customers))
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    checks["median_abs_diff_kwh"] = float(np.median(d)) if d.size else None
    rules = {str(r.name).lower(): {"ran": a[0], "why_not": None if a[0] else a[1], "failed": a[2]}
             for r, a in totals.items()}
    seconds["total"] = time.perf_counter() - clock
    conn.execute(mdm_sql.FINISH_VEE_RUN, {"run": run_id, "rules": json.dumps(rules),
                                          "seconds": json.dumps(seconds),
                                          "checks": json.dumps(checks),
                                          "meters": len(customers)})
    conn.commit()
    return VeeRun(run_id, period, len(customers), rules,
                  {"valid": int(days[0]), "estimated": int(days[1]), "failed": int(days[2])},
                  exceptions, seconds, checks)
