"""Evaluation scenarios built on real household interval data (`../shared/realdata/`).

A utility's MDM export is interval kWh per meter plus which meter hangs on which transformer.
This module makes such a population from measured households, with known truth:

- households (one dataset per scenario: the London or the New South Wales 6-week file) are
  shuffled and cut into transformers of 8-15 customers (the last may be smaller);
- each transformer gets a balance meter that measures what its customers truly drew plus the
  technical loss: no-load loss + load loss k S^2 (nameplate of the smallest standard rating
  above 1.25 x the peak) + service-cable loss c sum_i P_i^2 (unknown to the analysis), with
  a class 0.5 meter's error;
- thieves are drawn independently of transformers (a fraction of all households), each with
  one attack from ATTACKS (Jokar et al. 2016, h1-h6, plus bypass, capping and a flat report at
  the mean) from a random start day on; the first and last week are kept attack-free so
  that every thief has a before and an after (documented in docs/analytics.md);
- variants: `energy` (import kWh only, what most exports are) and `full` (adds kvarh, from a
  per-household power factor, for customers and balance meters).

The files are read where they are (never copied into the repository); a missing folder raises
`RealDataMissing` naming it, so tests and benchmarks can skip with that message.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from cloud.analytics.pipeline.feed import Feed, Topology, empty_arrays


def _default_root() -> Path:
    """`WATTRAIL_REALDATA`, else `../shared/realdata` beside the repository, else the
    workspace's `/work/shared/realdata` (a clone elsewhere, as CI makes, still finds it)."""
    env = os.environ.get("WATTRAIL_REALDATA")
    if env:
        return Path(env)
    beside = Path(__file__).resolve().parents[2] / "shared" / "realdata"
    for root in (beside, Path("/work/shared/realdata")):
        if root.is_dir():
            return root
    return beside


REALDATA = _default_root()
DATASETS = {
    "lcl": "lcl_london/lcl_london_halfhourly_50hh_2013-01-07_6w.csv",
    "sgsc": "sgsc_nsw/sgsc_nsw_halfhourly_2013-05-06_6w.csv",
}
ATTACKS = ("h1", "h2", "h3", "h4", "h5", "h6", "bypass", "capping", "flat_mean")
RATINGS_KVA = (10.0, 16.0, 25.0, 50.0, 100.0, 160.0, 250.0)


class RealDataMissing(FileNotFoundError):  # noqa: N818 - reads as the condition it names
    pass


@dataclass
class Households:
    ids: list[str]
    t0_s: int  # start of the first interval, Unix seconds
    step_s: int
    kwh: np.ndarray  # (H, T) interval kWh, NaN = absent in the source


def load(name: str, root: Path = REALDATA) -> Households:
    """One dataset as a dense (households x intervals) array; absent intervals stay NaN."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    path = root / DATASETS[name]
    if not path.is_file():
        raise RealDataMissing(f"real data not found at {path}: set WATTRAIL_REALDATA to the folder "
                              "that holds lcl_london/ and sgsc_nsw/ (../shared/realdata/README.md)")
    rows: dict[str, list[tuple[int, float]]] = {}
    step = None
    with path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            ts = int(datetime.fromisoformat(r["interval_start"]).timestamp())
            rows.setdefault(r["customer_id"], []).append((ts, float(r["kwh"])))
            step = int(r["interval_minutes"]) * 60
    assert step is not None
    t0 = min(ts for v in rows.values() for ts, _ in v)
    t1 = max(ts for v in rows.values() for ts, _ in v)
    n_t = (t1 - t0) // step + 1
    ids = sorted(rows)
    kwh = np.full((len(ids), n_t), np.nan)
    for h, m in enumerate(ids):
        idx = np.array([(ts - t0) // step for ts, _ in rows[m]])
        kwh[h, idx] = [v for _, v in rows[m]]
    return Households(ids, t0, step, kwh)


@dataclass
class Scenario:
    dataset: str
    seed: int
    variant: str
    feed: Feed
    labels: dict[str, np.ndarray]  # attack -> bool (N,), and "any"
    attack_of: list[str | None]  # per customer
    start_of: np.ndarray  # (N,) first attacked interval, -1 = honest
    true_kwh: np.ndarray  # (N, T) what each customer drew
    reported_kwh: np.ndarray  # (N, T) what its meter reported (NaN = absent)
    stolen_wh: np.ndarray  # (X,) per transformer over the run
    technical_wh: np.ndarray  # (X,) the true technical loss over the run
    notes: list[str] = field(default_factory=list)


def _attack(kind: str, x: np.ndarray, start: int, day: int, rng: np.random.Generator) -> np.ndarray:
    """The reported series for true consumption `x` (NaN kept), attacked from `start` on."""
    r = x.copy()
    seg = x[start:].copy()
    valid = ~np.isnan(seg)
    n_days = math.ceil(len(seg) / day)
    pad = np.full(n_days * day, np.nan)
    pad[: len(seg)] = seg
    days = pad.reshape(n_days, day)
    if kind == "h1":
        out = seg * rng.uniform(0.1, 0.8)
    elif kind == "h2":  # off for a random window of each day
        on = np.ones_like(days)
        for d in range(n_days):
            a = int(rng.integers(0, day))
            w = int(rng.integers(day // 6, day // 2 + 1))  # 4 to 12 hours
            on[d, (a + np.arange(w)) % day] = 0.0
        out = (days * on).reshape(-1)[: len(seg)]
    elif kind == "h3":
        out = seg * rng.uniform(0.1, 0.8, len(seg))
    elif kind == "h4":
        m = np.nanmean(days, axis=1, keepdims=True)
        out = (m * rng.uniform(0.1, 0.8, days.shape)).reshape(-1)[: len(seg)]
    elif kind == "h5":  # each day's mean, flat
        out = np.broadcast_to(np.nanmean(days, axis=1, keepdims=True), days.shape).reshape(-1)[: len(seg)]
    elif kind == "h6":  # each day reversed
        out = days[:, ::-1].reshape(-1)[: len(seg)]
    elif kind == "bypass":  # a load wired around the meter: up to that much is never seen
        out = np.maximum(seg - np.nanquantile(seg[seg > 0], rng.uniform(0.3, 0.7)), 0.0)
    elif kind == "capping":  # quantiles of the intervals with consumption: always bites
        out = np.minimum(seg, np.nanquantile(seg[seg > 0], rng.uniform(0.5, 0.8)))
    elif kind == "flat_mean":  # the mean of its honest past, whatever it draws now
        out = np.full(len(seg), np.nanmean(x[:start]))
    else:
        raise ValueError(f"unknown attack {kind!r}")
    out = np.where(valid, out, np.nan)  # an absent interval stays absent
    r[start:] = out
    return r


def _rating_kva(peak_kw: float) -> float:
    for r in RATINGS_KVA:
        if r >= 1.25 * peak_kw / 0.95:
            return r
    return RATINGS_KVA[-1]


def _registers(kwh: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Interval kWh (M, T) -> cumulative Wh registers at the T + 1 instants; an absent interval
    leaves its end instant unread (the register itself is unknown there)."""
    m, t = kwh.shape
    wh = np.nan_to_num(kwh) * 1000.0
    reg = np.empty((m, t + 1))
    reg[:, 0] = base
    reg[:, 1:] = base[:, None] + np.cumsum(wh, axis=1)
    reg[:, 1:][np.isnan(kwh)] = np.nan
    return reg


def build(dataset: str, seed: int, *, variant: str = "energy", theft_fraction: float = 0.2,
          households: Households | None = None, attacks: tuple[str, ...] = ATTACKS) -> Scenario:
    if variant not in ("energy", "full"):
        raise ValueError("variant must be 'energy' or 'full'")
    hh = households if households is not None else load(dataset)
    rng = np.random.default_rng(seed)
    n, n_t = hh.kwh.shape
    day = 86400 // hh.step_s
    order = rng.permutation(n)
    true = hh.kwh[order]
    ids = [hh.ids[i] for i in order]
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(8, 16)))
    sizes[-1] -= sum(sizes) - n
    if sizes[-1] < 4 and len(sizes) > 1:  # a stub group joins its neighbour
        tail = sizes.pop()
        sizes[-1] += tail
    tx_of = np.repeat(np.arange(len(sizes)), sizes)
    n_x = len(sizes)

    # thieves, independent of transformers
    # a household that (almost) never consumes cannot steal: thieves are drawn among those
    # with data on most intervals and consumption on at least a third of them
    n_thieves = max(1, round(theft_fraction * n))
    able = np.flatnonzero((np.mean(~np.isnan(true), axis=1) >= 0.5)
                          & (np.nanmean(true > 0, axis=1) >= 1 / 3))
    thieves = rng.choice(able, min(n_thieves, len(able)), replace=False)
    reported = true.copy()
    attack_of: list[str | None] = [None] * n
    start_of = np.full(n, -1, np.int64)
    n_days = n_t // day
    for j, i in enumerate(thieves):
        # round-robin over the (randomly ordered) thieves: every kind is present when there
        # are at least as many thieves as kinds
        kind = attacks[j % len(attacks)]
        start = int(rng.integers(7, n_days - 7)) * day
        reported[i] = _attack(kind, true[i], start, day, rng)
        attack_of[i], start_of[i] = kind, start
    labels: dict[str, np.ndarray] = {"any": start_of >= 0}
    for kind in attacks:
        labels[kind] = np.array([a == kind for a in attack_of])

    # balance meters: what the customers truly drew + technical loss, class 0.5 error
    dt_h = hh.step_s / 3600.0
    p_kw = np.nan_to_num(true) / dt_h  # interval-mean kW; an absent source interval draws 0
    pf = rng.uniform(0.88, 0.98, n)
    q_kvar = p_kw * np.tan(np.arccos(pf))[:, None]
    p_x = np.zeros((n_x, n_t))
    q_x = np.zeros((n_x, n_t))
    cable_kw = np.zeros((n_x, n_t))
    np.add.at(p_x, tx_of, p_kw)
    np.add.at(q_x, tx_of, q_kvar)
    c_cable = rng.uniform(0.004, 0.012, n_x)  # kW per kW^2 of a customer: ~1 % of energy
    np.add.at(cable_kw, tx_of, (p_kw**2 + q_kvar**2) * c_cable[tx_of, None])
    rating = np.array([_rating_kva(float(np.max(p_x[x]))) for x in range(n_x)])
    no_load_kw = 0.0028 * rating  # typical distribution transformers: 0.2-0.3 % no-load
    load_loss_kw = 0.015 * rating  # and ~1.5 % at rated load
    s2 = (p_x + cable_kw) ** 2 + q_x**2
    tech_kw = no_load_kw[:, None] + load_loss_kw[:, None] * s2 / rating[:, None] ** 2 + cable_kw
    bal_kwh = (p_x + tech_kw) * dt_h * (1.0 + rng.normal(0.0, 0.0025, (n_x, 1)))
    stolen = np.zeros(n_x)
    np.add.at(stolen, tx_of, np.nansum(true - reported, axis=1) * 1000.0)

    k = n_t + 1
    cust = empty_arrays(n, k)
    bal = empty_arrays(n_x, k)
    base = np.asarray(rng.uniform(1e6, 5e7, n))
    cust.import_wh = _registers(reported, base)
    cust.present = ~np.isnan(cust.import_wh)
    cust.polled = cust.present.copy()
    bal.import_wh = _registers(bal_kwh, rng.uniform(1e8, 1e9, n_x))
    bal.present = ~np.isnan(bal.import_wh)
    bal.polled = bal.present.copy()
    if variant == "full":
        rep_q = np.where(np.isnan(reported), np.nan, reported * np.tan(np.arccos(pf))[:, None])
        cust.import_varh = _registers(rep_q, np.zeros(n))
        bal.import_varh = _registers((q_x + 0.0) * dt_h, np.zeros(n_x))
        cust.export_varh = np.where(cust.present, 0.0, np.nan)
        bal.export_varh = np.where(bal.present, 0.0, np.nan)
    # energy-only: export and reactive registers are not in the export at all (all NaN)
    fdr = empty_arrays(1, k)
    topo = Topology(
        meter_ids=ids,
        transformer_ids=[f"TX-{x + 1:02d}" for x in range(n_x)],
        feeder_ids=["F-01"],
        region_ids=["R-01"],
        tx_of=tx_of.astype(np.int64),
        feeder_of_tx=np.zeros(n_x, np.int64),
        region_of_feeder=np.zeros(1, np.int64),
        cls=np.zeros(n, np.int64),
        phases=np.ones(n, np.int64),
        has_pv=np.zeros(n, np.bool_),
        tariff_per_kwh=np.full(n, 0.25),
        rating_va=rating * 1000.0,
        no_load_w=no_load_kw * 1000.0,
        load_loss_w=load_loss_kw * 1000.0,
    )
    feed = Feed(hh.t0_s, hh.step_s, cust, bal, fdr, topo)
    tech_wh = tech_kw.sum(axis=1) * dt_h * 1000.0
    return Scenario(dataset, seed, variant, feed, labels, attack_of, start_of, true, reported,
                    stolen, tech_wh)
