"""What the VEE and billing read from TimescaleDB: customers with their region's time zone and
tariffs, and each meter's interval energy on a regular grid with the per-interval evidence the
rules need (stale, clock, conflict, voltage) and the registers at the interval boundaries.

Interval j covers [t0 + j·step, t0 + (j+1)·step) and is closed by the reading at its end (as
the rollups count it). Its energy is the register difference of the readings at its two ends,
from `kernels.intervals.interval_energy` with no bridging: a missing reading leaves its two
intervals missing, for the VEE to estimate and mark, rather than estimated here unmarked.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from cloud.analytics.kernels.intervals import interval_energy
from cloud.mdm.calendar import CalendarError, local_parts, zone
from cloud.mdm.tariffs import Tariff, parse_tariff
from cloud.mdm.validation import Series
from cloud.store import mdm_sql
from cloud.store.pgcopy.decode import PG_EPOCH_US, FixedRowDecoder
from protocols.reading import Quality

F64 = npt.NDArray[np.float64]
_FIELDS = [("idx", "int4"), ("ts", "timestamptz"), ("import_wh", "float8"),
           ("export_wh", "float8"), ("import_varh", "float8"), ("v_l1", "float8"),
           ("quality", "int2")]
_NOT_READINGS = (int(Quality.COMMS_LOST), int(Quality.DECODE_ERROR))
# legacy customer classes map to the four tariff classes; anything else is 'special'
_CLASS = {"residential": "residential", "commercial": "commercial", "industrial": "industrial",
          "special": "special", "agricultural": "commercial", "public": "commercial"}


class MdmInputError(ValueError):
    """The archive cannot be validated or billed as it stands; the message says the fix."""


@dataclass
class Customers:
    meter_ids: list[str]
    customer_ids: list[str]
    region_ids: list[str]
    zones: list[str]
    classes: list[str]
    flat_price: F64
    currency: list[str]
    is_special: npt.NDArray[np.bool_]
    has_pv: npt.NDArray[np.bool_]
    transformer_ids: list[str]
    contract_kva: F64

    def __len__(self) -> int:
        return len(self.meter_ids)

    def take(self, idx: Sequence[int]) -> Customers:
        """The customers at positions `idx`, in that order."""
        ix = list(idx)
        a = np.asarray(ix, dtype=np.int64)
        return Customers(
            [self.meter_ids[i] for i in ix], [self.customer_ids[i] for i in ix],
            [self.region_ids[i] for i in ix], [self.zones[i] for i in ix],
            [self.classes[i] for i in ix], self.flat_price[a], [self.currency[i] for i in ix],
            self.is_special[a], self.has_pv[a], [self.transformer_ids[i] for i in ix],
            self.contract_kva[a])


def fetch_customers(conn: psycopg.Connection[Any], regions: Sequence[str] | None = None,
                    *, default_zone: str | None = None) -> Customers:
    """Every customer meter (of `regions`), with its region's zone. A region without a zone is
    refused (its days cannot be known) unless `default_zone` is given."""
    p = {"r": list(regions) if regions is not None else None}
    missing = [r for (r,) in conn.execute(mdm_sql.REGIONS_WITHOUT_ZONE, p)]
    if missing and default_zone is None:
        raise MdmInputError(
            f"region(s) {missing[:5]}{' ...' if len(missing) > 5 else ''} have no time zone, so "
            "their local days are unknown: set it with `wattrail topology time-zone REGION "
            "Europe/Berlin` (or regions[].time_zone in the grid file), or pass --time-zone")
    if default_zone is not None:
        zone(default_zone)  # a bad name fails here, with the message that says what to give
    rows = conn.execute(mdm_sql.CUSTOMERS, p).fetchall()
    for r in rows:
        if r[3] is not None:
            try:
                zone(r[3])
            except CalendarError as exc:
                raise MdmInputError(f"region {r[2]!r}: {exc}") from None
    return Customers(
        meter_ids=[r[0] for r in rows], customer_ids=[r[1] for r in rows],
        region_ids=[r[2] for r in rows], zones=[r[3] or str(default_zone) for r in rows],
        classes=[_CLASS.get(str(r[4]), "special") for r in rows],
        flat_price=np.array([r[5] for r in rows], dtype=np.float64),
        currency=[r[6] for r in rows],
        is_special=np.array([r[7] for r in rows], dtype=np.bool_),
        has_pv=np.array([r[8] for r in rows], dtype=np.bool_),
        transformer_ids=[r[9] for r in rows],
        contract_kva=np.array([np.nan if r[10] is None else r[10] for r in rows], np.float64))


def fetch_tariffs(conn: psycopg.Connection[Any]) -> dict[str, list[Tariff]]:
    """Every stored tariff version, by id, oldest first."""
    out: dict[str, list[Tariff]] = {}
    for (doc,) in conn.execute(mdm_sql.TARIFFS):
        t = parse_tariff(doc, where="stored tariff")
        out.setdefault(t.tariff_id, []).append(t)
    return out


@dataclass(frozen=True)
class Assignment:
    tariff_id: str
    valid_from: date
    valid_to: date | None


def fetch_assignments(conn: psycopg.Connection[Any], customer_ids: Sequence[str]
                      ) -> dict[str, list[Assignment]]:
    out: dict[str, list[Assignment]] = {}
    for c, t, a, b in conn.execute(mdm_sql.ASSIGNMENTS, {"c": list(customer_ids)}):
        out.setdefault(c, []).append(Assignment(t, a, b))
    return out


@dataclass
class Intervals:
    """The VEE's input for M meters over N intervals, plus what it cost to read."""

    series: Series
    register_at: F64  # (M, N+1) import register (kWh) at each interval boundary, NaN = none
    export_kwh: F64  # (M, N)
    kvarh: F64  # (M, N), NaN where the meter has no reactive register
    rows: int
    seconds: dict[str, float] = field(default_factory=dict)


def fetch_intervals(conn: psycopg.Connection[Any], meter_ids: Sequence[str], start: datetime,
                    end: datetime, step_s: int, tz_name: str) -> Intervals:
    """Intervals [start, end) of `meter_ids` (all in the zone `tz_name`)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise MdmInputError("start and end must be timezone-aware (UTC)")
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    if (t1 - t0) % step_s or t1 <= t0:
        raise MdmInputError(f"the period must be a whole number of {step_s} s intervals")
    n = (t1 - t0) // step_s
    m = len(meter_ids)
    tol = step_s // 10
    clock = time.perf_counter()
    dec = FixedRowDecoder(_FIELDS)
    with conn.cursor() as cur:
        q = sql.SQL(mdm_sql.copy_vee_window()).format(
            ids=sql.Literal(list(meter_ids)),
            lo=sql.Literal(datetime.fromtimestamp(t0 - tol, UTC)),
            hi=sql.Literal(datetime.fromtimestamp(t1 + tol, UTC)))
        with cur.copy(q) as copy:
            chunks = list(dec.feed(copy))
    rec = np.concatenate(chunks) if chunks else np.zeros(0, dtype=dec.dtype)
    conflicts = conn.execute(mdm_sql.CONFLICTS_IN, {
        "m": list(meter_ids), "lo": start, "hi": end}).fetchall()
    flagged = conn.execute(mdm_sql.CLOCK_FLAGGED_IN, {
        "m": list(meter_ids), "lo": start,
        "hi": datetime.fromtimestamp(t1 + tol, UTC)}).fetchall()
    t_read = time.perf_counter() - clock
    clock = time.perf_counter()
    ts = ((rec["ts"].astype(np.int64) + PG_EPOCH_US) // 1_000_000).astype(np.int64)
    # the kernel wants rows by (meter, time); the server's plan (meters, then chunks in time
    # order) usually sends them so: check in O(n) and skip the sort and, above all, the gather
    # of the 48-byte records (seconds at 15 M rows) when it did
    idx = rec["idx"].astype(np.int64)
    d_idx = np.diff(idx)
    if not bool(np.all((d_idx > 0) | ((d_idx == 0) & (np.diff(ts) > 0)))):
        order = np.lexsort((ts, idx))
        rec, ts, idx = rec[order], ts[order], idx[order]
    del d_idx
    usable = ~np.isin(rec["quality"], _NOT_READINGS)
    stale_row = rec["quality"] == int(Quality.STALE)
    # the interval a reading closes: the boundary it sits on (within the jitter tolerance)
    rel = ts - t0
    k = np.floor_divide(rel + step_s // 2, step_s)
    on_grid = (np.abs(rel - k * step_s) <= tol) & (k >= 0) & (k <= n)
    reg = np.where(stale_row, np.nan, rec["import_wh"].astype(np.float64))
    # no bridging: a pair of readings further apart than one step (+ jitter) is a gap
    energy = {}
    for name, values in (("import", reg), ("export", rec["export_wh"].astype(np.float64)),
                         ("varh", rec["import_varh"].astype(np.float64))):
        vals = np.where(usable & ~stale_row, values, np.nan)
        e, _q, _f = interval_energy(idx, ts, vals, np.zeros(idx.size, np.bool_),
                                    np.zeros(m, np.float64), t0=t0, step=step_s, n_steps=n,
                                    max_gap_s=step_s + tol, slack_s=tol)
        energy[name] = e / 1000.0
    register_at = np.full((m, n + 1), np.nan)
    sel = on_grid & usable & ~stale_row
    register_at[idx[sel], k[sel]] = rec["import_wh"][sel] / 1000.0

    def closing(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        out = np.zeros((m, n), dtype=np.bool_)
        s = mask & on_grid & (k >= 1)
        out[idx[s], k[s] - 1] = True
        return out

    stale = closing(stale_row)
    # a stale register also starts the next interval: both intervals it touches are stale
    stale[:, 1:] |= closing(stale_row)[:, :-1]
    pos = {mid: i for i, mid in enumerate(meter_ids)}
    clock_bad = np.zeros((m, n), dtype=np.bool_)
    for mid, fts in flagged:  # the interval a flagged reading closes, as `closing` counts it
        rel_s = int(fts.timestamp()) - t0
        kk = (rel_s + step_s // 2) // step_s
        if abs(rel_s - kk * step_s) <= tol and 1 <= kk <= n:
            clock_bad[pos[mid], kk - 1] = True
    voltage = np.full((m, n), np.nan)
    vs = on_grid & usable & (k >= 1)
    voltage[idx[vs], k[vs] - 1] = rec["v_l1"][vs]
    conflict = np.zeros((m, n), dtype=np.bool_)
    for mid, cts in conflicts:
        j = (int(cts.timestamp()) - t0 + step_s // 2) // step_s - 1
        if 0 <= j < n:
            conflict[pos[mid], j] = True
    starts = t0 + step_s * np.arange(n, dtype=np.int64)
    tz = zone(tz_name)
    ends = np.stack([register_at[:, 0], register_at[:, -1]], axis=1)
    series = Series(starts, step_s, local_parts(starts, tz), energy["import"], ends, voltage,
                    stale, clock_bad, conflict)
    return Intervals(series, register_at, energy["export"], energy["varh"], int(rec.size),
                     {"read": t_read, "intervals": time.perf_counter() - clock})
