"""Archive errors of known truth on the simulator, and the feed the archive checks read.

The simulator's grid is the truth (what hangs where); the *archive* is a copy with errors
injected, as field studies find them in utilities' records:

    neighbour_tx       a customer recorded on the nearest other transformer
    wrong_phase        a single-phase customer recorded on another phase
    missing_record     a meter that reports but has no record in the archive
    stale_coords       a customer's coordinates 1.5-4 km away (an old address)
    wrong_phase_count  a customer recorded as single-phase that is three-phase, or the reverse

Each error hits a disjoint random set of customers (rates in `ErrorRates`), drawn from a
generator seeded by the case's seed, so one seed is one case byte for byte.

What the meters report is the simulation's flows (simfeed.sample) plus what a real meter adds:
voltages are measured with noise (sigma `V_NOISE` volts, the repeatability of a class 0.5
meter's voltage channel) and rounded to 0.1 V, as DLMS/COSEM and the Modbus maps publish them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from cloud.analytics.pipeline.feed import Feed
from cloud.archive.completeness import ArchiveRecord, ArchiveSnapshot, MeterSummary, TransformerRecord
from cloud.archive.connectivity import ConnectivityInput
from firmware_sim.grid import Customer, Grid, generate_grid
from firmware_sim.simulation import Simulation

TUNING_SEEDS = (11, 12)  # thresholds and error rates were set on these only
REPORT_SEEDS = (4101, 4102, 4103, 4104, 4105)
T0 = 1_772_323_200  # 2026-03-01 00:00 UTC
V_NOISE = 0.05
KINDS = ("neighbour_tx", "wrong_phase", "missing_record", "stale_coords", "wrong_phase_count")


@dataclass(frozen=True)
class ErrorRates:
    neighbour_tx: float = 0.05
    wrong_phase: float = 0.05  # of single-phase customers
    missing_record: float = 0.02
    stale_coords: float = 0.02
    wrong_phase_count: float = 0.02


@dataclass
class Case:
    seed: int
    grid: Grid  # the truth
    archive: list[Customer]  # the records (missing_record meters absent)
    errors: dict[str, set[str]] = field(default_factory=dict)  # kind -> meter ids


def _nearest_other(grid: Grid, tid: str) -> str:
    me = next(t for t in grid.transformers if t.transformer_id == tid)
    best, best_d = tid, math.inf
    for t in grid.transformers:
        if t.transformer_id == tid:
            continue
        d = math.hypot(t.lat - me.lat, (t.lon - me.lon) * math.cos(math.radians(me.lat)))
        if d < best_d:
            best, best_d = t.transformer_id, d
    return best


def make_case(seed: int, meters: int = 1000, transformers: int = 20, feeders: int = 4,
              rates: ErrorRates | None = None) -> Case:
    r = rates or ErrorRates()
    grid = generate_grid(seed=seed, meters=meters, feeders=feeders, transformers=transformers)
    rng = np.random.default_rng(seed * 7919 + 101)
    n = len(grid.customers)
    order = rng.permutation(n)
    taken: set[int] = set()

    def draw(rate: float, pool: list[int]) -> list[int]:
        pool = [i for i in pool if i not in taken]
        k = round(rate * len(pool))
        got = [int(i) for i in rng.permutation(pool)[:k]]
        taken.update(got)
        return got

    everyone = [int(i) for i in order]
    singles = [i for i in everyone if grid.customers[i].phases == 1]
    sel = {
        "neighbour_tx": draw(r.neighbour_tx, everyone),
        "wrong_phase": draw(r.wrong_phase, singles),
        "missing_record": draw(r.missing_record, everyone),
        "stale_coords": draw(r.stale_coords, everyone),
        "wrong_phase_count": draw(r.wrong_phase_count, everyone),
    }
    recs = list(grid.customers)
    for i in sel["neighbour_tx"]:
        recs[i] = replace(recs[i], transformer_id=_nearest_other(grid, recs[i].transformer_id))
    for i in sel["wrong_phase"]:
        ph = recs[i].phase or 0
        recs[i] = replace(recs[i], phase=(ph + 1 + int(rng.integers(0, 2))) % 3)
    for i in sel["stale_coords"]:
        d_km, ang = float(rng.uniform(1.5, 4.0)), float(rng.uniform(0, 2 * math.pi))
        c = recs[i]
        recs[i] = replace(c, lat=round(c.lat + d_km / 111.0 * math.cos(ang), 6),
                          lon=round(c.lon + d_km / (111.0 * math.cos(math.radians(c.lat)))
                                    * math.sin(ang), 6))
    for i in sel["wrong_phase_count"]:
        c = recs[i]
        recs[i] = replace(c, phases=1, phase=0) if c.phases == 3 else replace(c, phases=3, phase=None)
    gone = set(sel["missing_record"])
    archive = [c for i, c in enumerate(recs) if i not in gone]
    errors = {k: {grid.customers[i].meter_id for i in v} for k, v in sel.items()}
    return Case(seed, grid, archive, errors)


def simulate(case: Case, days: float, step_s: int = 900) -> Feed:
    """Sample the truth's simulation; the feed's topology is the truth's (the checks use the
    archive's, built by `connectivity_input`)."""
    from wattrail import simfeed

    sim = Simulation(case.grid, T0)
    feed = simfeed.sample(sim, step_s, round(days * 86400 / step_s) + 1)
    rng = np.random.default_rng(case.seed * 31 + 7)
    for arr in (feed.customers, feed.balance):
        noisy = arr.v + rng.normal(0.0, V_NOISE, arr.v.shape)
        arr.v = np.round(noisy, 1)
    return feed


def every(feed: Feed, n: int) -> Feed:
    """Every n-th instant of a feed (15-minute data -> hourly: n = 4)."""
    def sub(a: object) -> object:
        out = replace(a)  # type: ignore[type-var]
        for name, val in vars(a).items():
            if isinstance(val, np.ndarray) and val.ndim >= 2:
                setattr(out, name, val[:, ::n])
        return out

    return replace(feed, step_s=feed.step_s * n, customers=sub(feed.customers),  # type: ignore[arg-type]
                   balance=sub(feed.balance), feeders=sub(feed.feeders))  # type: ignore[arg-type]


def head(feed: Feed, instants: int) -> Feed:
    """The first `instants` instants of a feed (a 28-day run gives the 1- and 7-day cases)."""
    def sub(a: object) -> object:
        out = replace(a)  # type: ignore[type-var]
        for name, val in vars(a).items():
            if isinstance(val, np.ndarray) and val.ndim >= 2:
                setattr(out, name, val[:, :instants])
        return out

    return replace(feed, customers=sub(feed.customers), balance=sub(feed.balance),  # type: ignore[arg-type]
                   feeders=sub(feed.feeders))  # type: ignore[arg-type]


def connectivity_input(case: Case, feed: Feed, *, voltage_only: bool = False) -> ConnectivityInput:
    """The archive's view of the feed: every meter that reports, on its recorded transformer and
    phase (-1 for the meters the archive lacks: they are placed, not checked);
    phases as the meter reports them (voltage columns present). `voltage_only`: no currents,
    no energy, no balance meters (an MDM export with hourly voltages and nothing else)."""
    tx_ids = [t.transformer_id for t in case.grid.transformers]
    tx_index = {t: i for i, t in enumerate(tx_ids)}
    by_meter = {c.meter_id: c for c in case.archive}
    grid_c = case.grid.customers
    idx = np.arange(len(grid_c))
    recs = [by_meter.get(c.meter_id) for c in grid_c]  # None: reports, not in the archive
    cust = feed.customers
    v = cust.v[idx]
    phases = np.where(np.isfinite(v[:, :, 1]).any(axis=1), 3, 1).astype(np.int64)
    rec_phase = np.array([c.phase if (c is not None and c.phases == 1 and c.phase is not None) else -1
                          for c in recs], np.int64)
    rec_phase = np.where(phases == 1, rec_phase, -1)  # a 3-phase record has no phase to check
    energy = None
    tx_energy = None
    i = None
    tx_v = None
    if not voltage_only:
        i = cust.i[idx]
        net = (cust.import_wh - cust.export_wh)[idx]
        energy = np.diff(net, axis=1)
        bal = feed.balance
        tx_energy = np.diff(bal.import_wh - bal.export_wh, axis=1)
        tx_v = bal.v
    return ConnectivityInput(
        meter_ids=[c.meter_id for c in grid_c],
        transformer_ids=tx_ids,
        recorded_tx=np.array([tx_index[c.transformer_id] if c is not None else -1 for c in recs], np.int64),
        recorded_phase=rec_phase,
        phases=phases,
        v=v, i=i, tx_v=tx_v, energy_wh=energy, tx_energy_wh=tx_energy,
    )


def snapshot(case: Case, feed: Feed) -> tuple[ArchiveSnapshot, list[MeterSummary]]:
    """The archive as records and what the readings say per meter, for the completeness checks."""
    g = case.grid
    tx = [TransformerRecord(t.transformer_id, t.feeder_id.split("-")[0], t.balance_meter_id, t.lat, t.lon)
          for t in g.transformers]
    recs = [ArchiveRecord(
        meter_id=c.meter_id, customer_id=c.customer_id, transformer_id=c.transformer_id,
        region_id=c.transformer_id.split("-")[0], customer_class=c.kind, phases=c.phases,
        phase=c.phase, tariff_per_kwh=c.tariff_per_kwh,
        contract_kva=None if c.kind == "residential" else round(c.base_kw * 6.0, 1),
        is_special=c.special, has_pv=c.pv_kwp > 0, lat=c.lat, lon=c.lon, serial=None, installs=1)
        for c in case.archive]
    cust = feed.customers
    t_last = feed.t0_s + (feed.n_instants - 1) * feed.step_s
    summaries = []
    for k, c in enumerate(g.customers):
        ok = cust.present[k]
        reported_phases = 3 if np.isfinite(cust.v[k, :, 1]).any() else 1
        exp = cust.export_wh[k]
        e_export = float(np.nanmax(exp) - np.nanmin(exp)) if ok.any() else 0.0
        p = cust.p_w[k]
        peak = float(np.nanmax(p)) / 1000.0 if ok.any() else float("nan")
        imp = cust.import_wh[k]
        d = np.diff(imp[np.isfinite(imp)])
        drops = int((d < -1000.0).sum())
        summaries.append(MeterSummary(
            meter_id=c.meter_id, kind="customer", first_ts=float(feed.t0_s) if ok.any() else None,
            last_ts=float(t_last) if ok.any() else None, readings=int(ok.sum()),
            phases_seen=reported_phases, export_wh=e_export, peak_kw=peak, peak_kva=peak / 0.9,
            register_resets=drops))
    for t in g.transformers:
        summaries.append(MeterSummary(meter_id=t.balance_meter_id, kind="balance",
                                      first_ts=float(feed.t0_s), last_ts=float(t_last),
                                      readings=feed.n_instants, phases_seen=3, export_wh=0.0,
                                      peak_kw=float("nan"), peak_kva=float("nan"), register_resets=0))
    return ArchiveSnapshot(transformers=tx, records=recs, now_ts=float(t_last)), summaries
