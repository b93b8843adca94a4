"""Turn a `Report` into the row arrays of the results tables (pure: no database).

What data/write.py writes, computed here so it can be checked without a server:
- loss per transformer / feeder / region, per interval and over the period. Transformers come
  straight from the report. Feeders use their head meter as input (report.feeder_balance) and
  regions the sum of their feeder heads (NaN in an interval unless every head read); their
  technical loss, NTL and revenue at risk are sums over their transformers (sigma in
  quadrature: transformers' errors are independent), so the MV line loss stays visible as
  loss - technical - NTL instead of being called theft;
- per-interval NTL sigma and the region balance, as the pipeline computed them (derived.py);
- the suspect ranking (score descending, ties by meter id) and each meter's strongest reason;
- regional daily totals, profile and the next-day Holt-Winters forecast of the report.
Every function is deterministic and runs no kernel: the same Feed and Report give the same rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from cloud.analytics.kernels import balance as kb
from cloud.analytics.kernels import loss as kl
from cloud.analytics.pipeline.derived import MIN_COMPLETENESS
from cloud.analytics.pipeline.feed import Feed
from cloud.analytics.pipeline.score import INDICATOR_NAMES, WEIGHTS
from cloud.analytics.pipeline.stages import Report
from protocols.reading import REGISTERS


@dataclass(frozen=True)
class LevelLoss:
    """One level's rows: (E,) over the period and (E, T) per interval; NaN = unknown."""

    level: str
    ids: list[str]
    period: dict[str, np.ndarray]  # energy_in_wh ... revenue_at_risk, completeness, low_confidence
    interval: dict[str, np.ndarray]


def _sum_over(values: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    """NaN-aware sum of rows per group; NaN where a group has no value at all."""
    v = np.ascontiguousarray(values.reshape(len(values), -1), np.float64)
    s, c = kb.group_sum_rows(v, group, n)
    out: np.ndarray = np.where(c > 0, s, np.nan).reshape((n, *values.shape[1:]))
    return out


def loss_levels(feed: Feed, rep: Report) -> list[LevelLoss]:
    topo = feed.topology
    n_tx, n_fd, n_rg = len(topo.transformer_ids), len(topo.feeder_ids), len(topo.region_ids)
    tariff = np.bincount(topo.tx_of, weights=topo.tariff_per_kwh, minlength=n_tx) / np.maximum(
        np.bincount(topo.tx_of, minlength=n_tx), 1)
    b = rep.balance
    sigma_i = rep.derived.ntl_sigma_series_wh
    tx_period_tech = b.period_loss_wh - rep.ntl_wh
    tx_ntl_i = rep.ntl_series_wh
    tx = _level("transformer", topo.transformer_ids, b, rep.technical_wh, tx_ntl_i, sigma_i,
                kl.revenue_at_risk(tx_ntl_i, tariff[:, None]), tx_period_tech, rep.ntl_wh,
                rep.ntl_sigma_wh, rep.revenue_at_risk)

    def rolled(group: np.ndarray, n: int, bal: kb.Balance, ids: list[str], level: str) -> LevelLoss:
        return _level(
            level, ids, bal, _sum_over(rep.technical_wh, group, n), _sum_over(tx_ntl_i, group, n),
            np.sqrt(_sum_over(sigma_i**2, group, n)), _sum_over(tx.interval["revenue_at_risk"], group, n),
            _sum_over(tx_period_tech, group, n), _sum_over(rep.ntl_wh, group, n),
            np.sqrt(_sum_over(rep.ntl_sigma_wh**2, group, n)), _sum_over(rep.revenue_at_risk, group, n))

    fd = rolled(topo.feeder_of_tx, n_fd, rep.feeder_balance, topo.feeder_ids, "feeder")
    region_of_tx = np.ascontiguousarray(topo.region_of_feeder[topo.feeder_of_tx])
    rg = rolled(region_of_tx, n_rg, rep.derived.region_balance, topo.region_ids, "region")
    est = rep.estimated_wh if rep.estimated_wh is not None else np.full(n_tx, np.nan)
    tx.period["estimated_wh"] = est
    fd.period["estimated_wh"] = _sum_over(est, topo.feeder_of_tx, n_fd)
    rg.period["estimated_wh"] = _sum_over(est, region_of_tx, n_rg)
    return [tx, fd, rg]


def _level(level: str, ids: list[str], bal: kb.Balance, tech_i: np.ndarray, ntl_i: np.ndarray,
           sigma_i: np.ndarray, rev_i: np.ndarray, tech: np.ndarray, ntl: np.ndarray,
           sigma: np.ndarray, rev: np.ndarray) -> LevelLoss:
    has_in = ~np.isnan(bal.input_wh)
    p_in = np.where(has_in.any(1), np.where(has_in, bal.input_wh, 0.0).sum(1), np.nan)
    # no input reading at all: no loss was measured, so none is reported (not 0)
    unmeasured = np.isnan(p_in)
    tech, ntl, sigma, rev = (np.where(unmeasured, np.nan, a) for a in (tech, ntl, sigma, rev))
    interval = {
        "energy_in_wh": bal.input_wh, "energy_out_wh": bal.downstream_wh, "loss_wh": bal.loss_wh,
        "loss_pct": bal.loss_pct, "technical_wh": tech_i, "ntl_wh": ntl_i, "ntl_sigma_wh": sigma_i,
        "completeness": bal.completeness, "low_confidence": bal.completeness < MIN_COMPLETENESS,
        "revenue_at_risk": rev_i,
    }
    period = {
        "energy_in_wh": p_in, "energy_out_wh": p_in - bal.period_loss_wh,
        "loss_wh": np.where(np.isnan(p_in), np.nan, bal.period_loss_wh),
        "loss_pct": bal.period_loss_pct, "technical_wh": tech, "ntl_wh": ntl, "ntl_sigma_wh": sigma,
        "completeness": bal.period_completeness,
        "low_confidence": bal.period_completeness < MIN_COMPLETENESS, "revenue_at_risk": rev,
    }
    return LevelLoss(level, ids, period, interval)


def suspect_ranking(meter_ids: list[str], score: np.ndarray) -> np.ndarray:
    """rank (1 = most suspect) per meter: score descending, ties by meter id."""
    order = np.lexsort((np.array(meter_ids, dtype=object).astype(str), -score))
    rank = np.empty(len(score), np.int64)
    rank[order] = np.arange(1, len(score) + 1)
    return rank


def strongest(evidence: np.ndarray) -> list[str | None]:
    """Name of the indicator that adds most to each score; None when no evidence at all."""
    w = WEIGHTS[None, :] * evidence
    best = np.argmax(w, axis=1)
    return [INDICATOR_NAMES[b] if w[m, b] > 0 else None for m, b in enumerate(best)]


@dataclass(frozen=True)
class RegionSummary:
    energy_wh: float
    peak_interval_wh: float | None
    peak_index: int | None
    daily_wh: list[float | None]
    profile_wh: list[float | None]
    forecast_wh: list[float | None] | None
    holdout_mae_wh: float | None
    holdout_mape_pct: float | None


def _clean(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(x) else float(x) for x in a]


def _opt(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def region_summaries(rep: Report, day: int) -> list[RegionSummary]:
    out = []
    prof = rep.derived.region_profile_wh
    for r, y in enumerate(rep.region_wh):
        t = len(y)
        peak = int(np.nanargmax(y)) if np.isfinite(y).any() else None
        daily = [float(np.nansum(y[d * day:(d + 1) * day])) for d in range(t // day)]
        forecast = rep.derived.region_forecast_wh[r]
        fc = None if forecast is None else _clean(forecast)
        err = rep.forecast_error[r]
        out.append(RegionSummary(
            float(np.nansum(y)), None if peak is None else float(y[peak]), peak,
            [None if not np.isfinite(v) else v for v in daily],
            _clean(prof[r]) if prof is not None else [], fc,
            _opt(err["mae"]), _opt(err["mape_pct"])))
    return out


def feed_digest(feed: Feed) -> bytes:
    """SHA-256 of everything the pipeline reads: equal digests = the same input data."""
    h = hashlib.sha256()
    h.update(np.array([feed.t0_s, feed.step_s], np.int64).tobytes())
    topo = feed.topology
    for ids in (topo.meter_ids, topo.transformer_ids, topo.feeder_ids, topo.region_ids):
        h.update("\x1f".join(ids).encode() + b"\x1e")
    for name in ("tx_of", "feeder_of_tx", "region_of_feeder", "cls", "phases", "has_pv",
                 "tariff_per_kwh", "rating_va", "no_load_w", "load_loss_w"):
        h.update(np.ascontiguousarray(getattr(topo, name)).tobytes())
    for arr in (feed.customers, feed.balance, feed.feeders):
        for name in (*REGISTERS, "v", "i", "i_n", "p_w", "q_var", "status", "present", "modulus_wh",
                     "polled", "offset_s"):
            h.update(np.ascontiguousarray(getattr(arr, name)).tobytes())
    return h.digest()
