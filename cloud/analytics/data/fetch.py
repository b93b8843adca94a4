"""Build a `Feed` for a period (and optional regions) from TimescaleDB: topology + readings.

The same arrays `wattrail.simfeed.sample` builds from the simulator, so the pipeline is the
same on streamed, imported and simulated data.

Theory of operation:
- Topology: four small queries (regions, feeders, transformers, customers), each ordered by id,
  so row order (and every index into the arrays) is a function of the archive alone.
- Readings: ONE binary `COPY (SELECT ...) TO STDOUT` over `readings` for every meter of the
  feed (customers, balance, feeder heads), joined to the id list so each row carries its array
  row as an int4. Floats are `coalesce`d to NaN so every row has one fixed width and decodes
  with `np.frombuffer` (`cloud/store/pgcopy/decode.py`), in batches, scattered straight into the Feed arrays.
  Rollup tables are not used: the kernels need voltages, currents and status, which rollups do
  not keep, and the interval kernel must see rollbacks/rollovers that rollups discard.
- Snapping: instant k is t0 + k*step. A reading belongs to its nearest instant if it lies within
  `tolerance_s` of it (half-open window); when several do, the closest wins, the earlier on a tie.
  The reading keeps its offset from the instant (`offset_s`, whole seconds): interval energy
  interpolates registers from when they were read, so a poll cycle that ran minutes late moves
  no energy from one interval to the next.
- Quality: COMMS_LOST / DECODE_ERROR rows are not readings (present stays False), but they
  prove the meter was asked (polled is True): the outage kernel needs that difference. A STALE row
  proves the meter answered (present) but its registers were not refreshed, so they stay NaN
  rather than put zero energy in one interval and a jump in the next.
- `modulus_wh` (register wrap) comes from the meter model's register width (`MODULUS_BY_MODEL`),
  overridable per meter id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from cloud.analytics.pipeline.feed import PER_METER, Feed, MeterArrays, Topology, empty_arrays
from cloud.store import readings_sql
from cloud.store.pgcopy.decode import PG_EPOCH_US, FixedRowDecoder
from protocols.reading import MEASURED_FIELDS, REGISTERS, Quality

# Class index order: the simulator's CUSTOMER_KINDS first (same indices as simfeed gives), any
# other class in the archive after them, sorted.
CLASSES = ("residential", "commercial", "industrial")
# Register wrap by model: IEEE float registers (Eastron) do not wrap; EM24 int32 x 100 Wh stays
# below 2**31 by its range; SunSpec acc32 Wh (scale factor 0 in our map) wraps at 2**32.
MODULUS_BY_MODEL: dict[str, float] = {"sdm630": 0.0, "sdm120": 0.0, "em24": 0.0, "sunspec203": 2.0**32}
# every measured field but the power factor and frequency, which the loss and theft analytics
# do not use (they are derived from, or independent of, what they read)
FLOATS = tuple(f for f in MEASURED_FIELDS if f not in ("pf", "freq_hz"))
FIELDS = [("idx", "int4"), ("ts", "timestamptz"), *[(f, "float8") for f in FLOATS],
          ("status", "int4"), ("quality", "int2")]
_NOT_READINGS = (int(Quality.COMMS_LOST), int(Quality.DECODE_ERROR))

_COPY = readings_sql.copy_window(FLOATS)


class FetchError(ValueError):
    """The request cannot be served as asked (bad period, unknown region): says what to change."""


@dataclass(frozen=True)
class FetchStats:
    rows: int  # reading rows transferred
    used: int  # rows that became an instant's reading
    seconds_topology: float
    seconds_readings: float


def instants(start: datetime, end: datetime, step_s: int) -> tuple[int, int]:
    """(t0 in Unix s, K): instants start, start + step, ..., end (both ends included)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise FetchError("start and end must be timezone-aware (UTC)")
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    if step_s <= 0 or t1 <= t0 or (t1 - t0) % step_s:
        raise FetchError(f"the period {start.isoformat()}..{end.isoformat()} must be a positive "
                         f"whole number of {step_s}-s steps; round --from/--to to the step")
    return t0, (t1 - t0) // step_s + 1


def _ids(rows: list[tuple[Any, ...]]) -> list[str]:
    return [str(r[0]) for r in rows]


def fetch_topology(conn: psycopg.Connection[Any], regions: Sequence[str] | None = None
                   ) -> tuple[Topology, dict[str, list[tuple[str | None, str | None]]]]:
    """Topology arrays + per role the (meter id, model) aligned with its rows."""
    where = "" if regions is None else " WHERE region_id = ANY(%(r)s)"
    p = {"r": list(regions or [])}
    reg = conn.execute(f"SELECT region_id FROM regions{where} ORDER BY region_id", p).fetchall()
    if regions is not None and len(reg) != len(set(regions)):
        unknown = sorted(set(regions) - set(_ids(reg)))
        raise FetchError(f"unknown region(s) {unknown}; list them with SELECT region_id FROM regions")
    region_ids = _ids(reg)
    fd = conn.execute(
        "SELECT f.feeder_id, f.region_id, f.head_meter_id, m.model FROM feeders f"
        " LEFT JOIN meters m ON m.meter_id = f.head_meter_id"
        " WHERE f.region_id = ANY(%s) ORDER BY f.feeder_id", [region_ids]).fetchall()
    feeder_ids = _ids(fd)
    tx = conn.execute(
        "SELECT t.transformer_id, t.feeder_id, t.balance_meter_id, m.model, t.rating_kva,"
        " t.no_load_loss_w, t.load_loss_w FROM transformers t"
        " LEFT JOIN meters m ON m.meter_id = t.balance_meter_id"
        " WHERE t.feeder_id = ANY(%s) ORDER BY t.transformer_id", [feeder_ids]).fetchall()
    tx_ids = _ids(tx)
    cu = conn.execute(
        "SELECT m.meter_id, c.transformer_id, c.class, coalesce(c.phases, m.phases, 1), c.has_pv,"
        " c.tariff_per_kwh::float8, m.model FROM meters m JOIN customers c USING (customer_id)"
        " WHERE m.kind = 'customer' AND c.transformer_id = ANY(%s) ORDER BY m.meter_id",
        [tx_ids]).fetchall()
    classes = list(CLASSES) + sorted({r[2] for r in cu} - set(CLASSES))
    r_ix = {r: i for i, r in enumerate(region_ids)}
    f_ix = {f: i for i, f in enumerate(feeder_ids)}
    t_ix = {t: i for i, t in enumerate(tx_ids)}
    c_ix = {c: i for i, c in enumerate(classes)}
    topo = Topology(
        meter_ids=_ids(cu),
        transformer_ids=tx_ids,
        feeder_ids=feeder_ids,
        region_ids=region_ids,
        tx_of=np.array([t_ix[r[1]] for r in cu], np.int64),
        feeder_of_tx=np.array([f_ix[r[1]] for r in tx], np.int64),
        region_of_feeder=np.array([r_ix[r[1]] for r in fd], np.int64),
        cls=np.array([c_ix[r[2]] for r in cu], np.int64),
        phases=np.array([r[3] for r in cu], np.int64),
        has_pv=np.array([r[4] for r in cu], np.bool_),
        tariff_per_kwh=np.array([r[5] for r in cu], np.float64),
        rating_va=np.array([r[4] * 1000.0 for r in tx], np.float64),
        no_load_w=np.array([r[5] for r in tx], np.float64),
        load_loss_w=np.array([r[6] for r in tx], np.float64),
    )
    meters = {"customers": [(r[0], r[6]) for r in cu], "balance": [(r[2], r[3]) for r in tx],
              "feeders": [(r[2], r[3]) for r in fd]}
    return topo, meters


def fetch_feed(
    conn: psycopg.Connection[Any],
    start: datetime,
    end: datetime,
    *,
    step_s: int = 900,
    regions: Sequence[str] | None = None,
    tolerance_s: float | None = None,
    modulus_wh: Mapping[str, float] | None = None,
) -> tuple[Feed, FetchStats]:
    """The Feed for instants start..end (inclusive) every `step_s`, from one consistent snapshot."""
    import time

    t0, k = instants(start, end, step_s)
    tol_us = int((step_s / 2 if tolerance_s is None else tolerance_s) * 1e6)
    if not 0 < tol_us <= step_s * 500_000:
        raise FetchError(f"tolerance_s must be in (0, {step_s / 2}] (half the step)")
    clock = time.perf_counter()
    with conn.transaction():
        # one snapshot for topology and readings: rows committed in between cannot mismatch
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        # LLVM JIT compiles the big COPY query for ~0.1-0.2 s and gains nothing on a plain scan
        conn.execute("SET LOCAL jit = off")
        topo, meters = fetch_topology(conn, regions)
        t_topo = time.perf_counter() - clock
        roles = {name: empty_arrays(len(ms), k) for name, ms in meters.items()}
        for name, ms in meters.items():
            roles[name].modulus_wh = np.array(
                [(modulus_wh or {}).get(mid or "", MODULUS_BY_MODEL.get(model or "", 0.0))
                 for mid, model in ms], np.float64)
        ids = [mid for ms in meters.values() for mid, _ in ms]
        bounds = np.cumsum([0] + [len(ms) for ms in meters.values()])
        lo_s, hi_s = t0 - tol_us / 1e6, t0 + (k - 1) * step_s + tol_us / 1e6
        snap = _Snapper(t0 * 1_000_000, step_s * 1_000_000, k, tol_us, list(roles.values()), bounds)
        decoder = FixedRowDecoder(FIELDS)
        with conn.cursor() as cur:
            query = sql.SQL(_COPY).format(
                ids=sql.Literal(ids),
                lo=sql.Literal(datetime.fromtimestamp(lo_s, UTC)),
                hi=sql.Literal(datetime.fromtimestamp(hi_s, UTC)))
            with cur.copy(query) as copy:
                for rec in decoder.feed(copy):
                    snap.add(rec)
    for arr in roles.values():
        _blank_stale(arr, snap.stale.pop(0))
    feed = Feed(t0, step_s, roles["customers"], roles["balance"], roles["feeders"], topo)
    used = sum(int(a.present.sum()) for a in roles.values())
    stats = FetchStats(decoder.rows, used, t_topo, time.perf_counter() - clock - t_topo)
    return feed, stats


class _Snapper:
    """Scatter decoded rows into the role arrays, keeping the reading nearest each instant."""

    def __init__(self, t0_us: int, step_us: int, k: int, tol_us: int,
                 arrays: list[MeterArrays], bounds: np.ndarray) -> None:
        self.t0_us, self.step_us, self.k, self.tol_us = t0_us, step_us, k, tol_us
        self.arrays, self.bounds = arrays, bounds
        # per role: best distance key so far (2|d| + after), int64 max = none
        self.best = [np.full((a.present.shape[0], k), np.iinfo(np.int64).max) for a in arrays]
        self.stale = [np.zeros((a.present.shape[0], k), np.bool_) for a in arrays]

    def add(self, rec: np.ndarray) -> None:
        rel = rec["ts"].astype(np.int64) + (PG_EPOCH_US - self.t0_us)
        kk = np.floor_divide(rel + self.step_us // 2, self.step_us)
        d = rel - kk * self.step_us
        near = (kk >= 0) & (kk < self.k) & (d >= -self.tol_us) & (d < self.tol_us)
        ok = near & ~np.isin(rec["quality"], _NOT_READINGS)
        idx = rec["idx"].astype(np.int64)
        for role, arr in enumerate(self.arrays):  # asked at the instant, answered or not
            lo, hi = self.bounds[role], self.bounds[role + 1]
            sel = np.flatnonzero(near & (idx >= lo) & (idx < hi))
            arr.polled.reshape(-1)[(idx[sel] - lo) * self.k + kk[sel]] = True
        dkey = 2 * np.abs(d) + (d > 0)
        for role, arr in enumerate(self.arrays):
            lo, hi = self.bounds[role], self.bounds[role + 1]
            sel = np.flatnonzero(ok & (idx >= lo) & (idx < hi))
            if len(sel) == 0:
                continue
            flat = (idx[sel] - lo) * self.k + kk[sel]
            order = np.lexsort((dkey[sel], flat))  # per instant, the closest reading first
            first = np.ones(len(order), np.bool_)
            first[1:] = flat[order][1:] != flat[order][:-1]
            pick = order[first]
            f, rows = flat[pick], sel[pick]
            best = self.best[role].reshape(-1)
            better = dkey[rows] < best[f]
            f, rows = f[better], rows[better]
            best[f] = dkey[rows]
            self._put(arr, role, f, rec[rows])
            arr.offset_s.reshape(-1)[f] = np.floor_divide(d[rows], 1_000_000)

    def _put(self, arr: MeterArrays, role: int, f: np.ndarray, r: np.ndarray) -> None:
        for name in PER_METER:
            getattr(arr, name).reshape(-1)[f] = r[name]
        v, i = arr.v.reshape(-1, 3), arr.i.reshape(-1, 3)
        for ph in range(3):
            v[f, ph] = r[f"v_l{ph + 1}"]
            i[f, ph] = r[f"i_l{ph + 1}"]
        arr.status.reshape(-1)[f] = r["status"]
        arr.present.reshape(-1)[f] = True
        # a later, closer row may replace a stale one: the flag follows the row that won
        self.stale[role].reshape(-1)[f] = r["quality"] == int(Quality.STALE)


def _blank_stale(arr: MeterArrays, stale: np.ndarray) -> None:
    for name in REGISTERS:
        getattr(arr, name)[stale] = np.nan


@dataclass(frozen=True)
class Cadence:
    step_s: int  # what the analysis should run at
    per_step: dict[int, int]  # a meter's median reading spacing (s) -> meters with it
    sampled_meters: int

    @property
    def mixed(self) -> bool:
        return len(self.per_step) > 1

    def note(self) -> str | None:
        if not self.mixed:
            return None
        parts = ", ".join(f"{s // 60} min ({n} meters)" for s, n in sorted(self.per_step.items()))
        return (f"mixed cadences: {parts}; analysed at {self.step_s // 60} min, the coarsest one "
                "that at least 5 % of the meters have (finer meters are summed, none is invented)")


def detect_cadence(conn: psycopg.Connection[Any], start: datetime, end: datetime, *,
                   sample_meters: int = 500, default_s: int = 900) -> Cadence:
    """The readings' own cadence over the period: each meter's median spacing between
    consecutive readings (a sample of `sample_meters` meters by id, so this costs the same on
    10 or 100,000 meters), rounded to the minute. No readings: `default_s`."""
    rows = conn.execute(
        readings_sql.MEDIAN_SPACING,
        {"s": start, "e": end, "n": sample_meters}).fetchall()
    per: dict[int, int] = {}
    for _mid, gap in rows:
        s = max(60, round(float(gap) / 60.0) * 60)
        per[s] = per.get(s, 0) + 1
    if not per:
        return Cadence(default_s, {}, 0)
    n = sum(per.values())
    common = [s for s, k in per.items() if k >= 0.05 * n]
    return Cadence(max(common), per, n)
