"""Billing determinants for a local month: a VEE run, then on each chunk while it is in memory
the determinants of every customer at the tariff in force, written as one billing run.

Which tariff: the customer's assignments (`customer_tariffs`, local dates) and the tariff's
versions (`tariffs`, validity dates) split the month into pieces of consecutive days with one
tariff version each; each piece is one determinants row (a bill's proration line) with its own
demand maximum. A customer with no assignment is billed at the archive's flat
`customers.tariff_per_kwh` as tariff "archive-flat" (one period, no demand charge), so an
archive without tariffs still gets determinants; `wattrail tariffs import` replaces that.
Days no assignment or no tariff version covers are a piece of their own with tariff
"no-tariff": their energy is reported and their amount is NULL, never billed at another tariff.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import psycopg

from cloud.mdm.calendar import days_of, local_parts, zone
from cloud.mdm.determinants import compute
from cloud.mdm.estimation import EstimateParams
from cloud.mdm.fetch import Assignment, fetch_assignments, fetch_tariffs
from cloud.mdm.run import Chunk, VeeRun, run_vee
from cloud.mdm.tariffs import Tariff
from cloud.mdm.validation import Params
from cloud.store import mdm_sql

FLAT_ID = "archive-flat"
NO_TARIFF = "no-tariff"
_STATUS = ("valid", "estimated", "failed")


@dataclass
class BillingRun:
    run_id: int
    period: str
    vee: VeeRun
    rows: int
    complete: int  # rows with an amount
    seconds: dict[str, float]


def flat_tariff(price: float, currency: str, cls: str, first_day: date) -> Tariff:
    return Tariff.model_validate({
        "tariff_id": FLAT_ID, "class": cls, "currency": currency, "valid_from": first_day,
        "default_period": "all-day", "energy_price": {"all-day": price}})


def pieces(assignments: list[Assignment] | None, tariffs: dict[str, list[Tariff]],
           days: list[date]) -> list[tuple[Tariff | None, int, int]]:
    """(tariff version, first day index, last day index) of consecutive days with one version;
    None for days nothing covers; [] when the customer has no assignment at all."""
    if not assignments:
        return []
    out: list[tuple[Tariff | None, int, int]] = []
    for i, d in enumerate(days):
        a = next((a for a in assignments if a.valid_from <= d
                  and (a.valid_to is None or d <= a.valid_to)), None)
        t = None if a is None else next(
            (v for v in reversed(tariffs.get(a.tariff_id, [])) if v.valid_on(d)), None)
        if out and out[-1][0] is t and out[-1][2] == i - 1:
            out[-1] = (t, out[-1][1], i)
        else:
            out.append((t, i, i))
    return out


class _Collector:
    def __init__(self, conn: psycopg.Connection[Any], tariffs: dict[str, list[Tariff]]) -> None:
        self.conn, self.tariffs = conn, tariffs
        self.rows: list[tuple[Any, ...]] = []

    def __call__(self, ch: Chunk) -> None:
        c = ch.customers
        tz = zone(c.zones[0])
        days = [d.first_day for d in days_of(ch.period, tz)]
        s = ch.intervals.series
        local_day = s.parts.day
        first_epoch = (days[0] - date(1970, 1, 1)).days
        assign = fetch_assignments(self.conn, c.customer_ids)
        groups: dict[tuple[Any, ...], tuple[list[tuple[Tariff | None, int, int]], list[int]]] = {}
        for i, cust in enumerate(c.customer_ids):
            plan = pieces(assign.get(cust), self.tariffs, days) or [
                (flat_tariff(float(c.flat_price[i]), c.currency[i], c.classes[i], days[0]),
                 0, len(days) - 1)]
            key = tuple((None if t is None else (t.tariff_id, t.valid_from, t.energy_price.get(
                "all-day")), a, b) for t, a, b in plan)
            groups.setdefault(key, (plan, []))[1].append(i)
        value = ch.estimated.value
        est = ch.estimated.estimated
        for plan, rows in groups.values():
            r = np.asarray(rows)
            for piece, a, b in plan:
                # uncovered days: their energy at a zero price, reported, never billed
                tariff = piece or flat_tariff(0.0, c.currency[rows[0]], "special", days[a])
                sel = (local_day >= first_epoch + a) & (local_day <= first_epoch + b)
                ts = s.ts_s[sel]
                d = compute(ts, s.step_s, local_parts(ts, tz), tariff, value[r][:, sel],
                            ch.intervals.export_kwh[r][:, sel], ch.intervals.kvarh[r][:, sel],
                            est[r][:, sel])
                status = ch.status[r][:, a:b + 1].max(axis=1)
                for j, i in enumerate(rows):
                    billable = piece is not None and d.missing[j] == 0
                    self.rows.append((
                        c.customer_ids[i], c.meter_ids[i],
                        tariff.tariff_id if piece is not None else NO_TARIFF, tariff.valid_from,
                        days[a], days[b], tariff.currency,
                        json.dumps(dict(zip(d.period_names, np.round(d.kwh[j], 6).tolist(),
                                            strict=True))),
                        float(d.total_kwh[j]), float(np.nan_to_num(d.export_kwh[j])),
                        None if np.isnan(d.kvarh[j]) else float(d.kvarh[j]),
                        None if np.isnan(d.max_kw[j]) else float(d.max_kw[j]),
                        None if d.max_kw_at_s[j] < 0
                        else datetime.fromtimestamp(int(d.max_kw_at_s[j]), UTC),
                        d.demand_window_s,
                        None if np.isnan(d.estimated_share[j]) else float(d.estimated_share[j]),
                        d.intervals, int(d.missing[j]),
                        float(d.amount[j]) if billable and np.isfinite(d.amount[j]) else None,
                        _STATUS[int(status[j])]))


def run_billing(conn: psycopg.Connection[Any], period: str, *, step_s: int = 900,
                regions: Sequence[str] | None = None, default_zone: str | None = None,
                params: Params | None = None, estimate_params: EstimateParams | None = None,
                chunk_meters: int = 5000,
                progress: Callable[[int, int], None] | None = None) -> BillingRun:
    """VEE for `period`, then every customer's determinants; both stored."""
    clock = time.perf_counter()
    collect = _Collector(conn, fetch_tariffs(conn))
    vee = run_vee(conn, period, step_s=step_s, regions=regions, default_zone=default_zone,
                  params=params, estimate_params=estimate_params, chunk_meters=chunk_meters,
                  on_chunk=collect, progress=progress)
    t = time.perf_counter()
    seconds = {"vee": vee.seconds["total"] - vee.seconds["on_chunk"],
               "determinants": vee.seconds["on_chunk"]}
    row = conn.execute(mdm_sql.NEW_BILLING_RUN, {
        "period": period, "vee": vee.run_id, "customers": vee.meters,
        "seconds": json.dumps(seconds)}).fetchone()
    assert row is not None
    run_id = int(row[0])
    with conn.cursor() as cur, cur.copy(mdm_sql.COPY_DETERMINANTS) as cp:
        for r in collect.rows:
            cp.write_row((run_id, *r))
    seconds["write"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - clock
    conn.execute(mdm_sql.SET_BILLING_SECONDS, {"run": run_id, "seconds": json.dumps(seconds)})
    conn.commit()
    complete = sum(1 for r in collect.rows if r[17] is not None)
    return BillingRun(run_id, period, vee, len(collect.rows), complete, seconds)

