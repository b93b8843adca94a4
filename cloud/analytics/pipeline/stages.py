"""Run every kernel over a `Feed`: registers -> intervals -> balance, losses, suspects, quality,
outages, regional forecast. Pure: arrays in, a `Report` out; the same feed gives the same report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloud.analytics.kernels import balance as kb
from cloud.analytics.kernels import forecast as kf
from cloud.analytics.kernels import intervals as ki
from cloud.analytics.kernels import loss as kl
from cloud.analytics.kernels import observer as ko_obs
from cloud.analytics.kernels import outage as ko
from cloud.analytics.kernels import quality as kq
from cloud.analytics.kernels import theft_meter as ktm
from cloud.analytics.kernels import theft_pattern as ktp
from cloud.analytics.pipeline import score as sc
from cloud.analytics.pipeline.derived import Derived, derive
from cloud.analytics.pipeline.feed import Feed, MeterArrays
from protocols.reading import MeterStatus


def replaced_marks(status: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(M, K) True at the first reading that carries METER_REPLACED after one that did not
    (the last *answered* reading, so a comms gap does not re-trigger a reset)."""
    flag = (status & int(MeterStatus.METER_REPLACED)) != 0
    out = np.zeros_like(flag)
    last = np.zeros(flag.shape[0], np.bool_)
    for k in range(flag.shape[1]):
        p = present[:, k]
        out[:, k] = p & flag[:, k] & ~last
        last = np.where(p, flag[:, k], last)
    return out  # type: ignore[no-any-return]  # numpy stubs: zeros_like of an untyped array is Any


def intervals(
    arr: MeterArrays, reg: np.ndarray, feed: Feed, replaced: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense (M, K) registers -> interval energy (M, K - 1) via the long-format kernel."""
    k = reg.shape[1]
    rows, cols = np.nonzero(~np.isnan(reg))  # row-major: sorted by meter, then time
    ts = (feed.t0_s + cols * feed.step_s + arr.offset_s[rows, cols]).astype(np.int64)  # when read
    rep = replaced[rows, cols] if replaced is not None else np.zeros(len(rows), np.bool_)
    return ki.interval_energy(
        rows.astype(np.int64),
        ts,
        np.ascontiguousarray(reg[rows, cols]),
        np.ascontiguousarray(rep),
        np.ascontiguousarray(arr.modulus_wh, np.float64),
        t0=feed.t0_s,
        step=feed.step_s,
        n_steps=k - 1,
    )


ASSUMED_PF = 0.95  # a balance meter without reactive energy: S = P / 0.95 for its load loss
MIN_FIT_DAYS = 3  # quiet days a transformer needs before its loss model is fitted on them

# indicator -> what it needs, in words a user reads ("bypass: needs voltage and current")
NEEDS = {
    "flags": "meter status flags",
    "export_no_pv": "export energy",
    "bypass": "voltage and current",
    "neutral": "neutral current",
    "change_point": "interval energy",
    "peer_dev": "interval energy",
    "localisation": "interval energy and a balance meter",
    "comms_drop": "interval energy",
    "observer": "interval energy and a balance meter",
    "balance_timing": "interval energy and a balance meter",
}


def has(a: np.ndarray) -> np.ndarray:
    """(rows,) True where a row (a meter) has any value at all."""
    out: np.ndarray = ~np.isnan(a).reshape(a.shape[0], -1).all(1)
    return out


@dataclass
class Inputs:
    """What the feed measured, so that every indicator can say when it could not run."""

    export_measured: np.ndarray  # (N,) the customer's export register has values
    balance_export: np.ndarray  # (X,) the balance meter's export register has values
    balance_varh: np.ndarray  # (X,) the balance meter has reactive energy
    balance: np.ndarray  # (X,) the transformer has a balance meter with energy values
    voltage: bool  # any customer voltage
    current: bool
    neutral: bool
    loss_model: np.ndarray  # (X,) str: "measured" (nameplate + measured cables), "fitted", "nameplate"

    @classmethod
    def of(cls, feed: Feed) -> Inputs:
        c, b = feed.customers, feed.balance
        return cls(has(c.export_wh), has(b.export_wh), has(b.import_varh), has(b.import_wh),
                   bool(has(c.v).any()), bool(has(c.i).any()), bool(has(c.i_n).any()),
                   np.full(len(feed.topology.transformer_ids), "measured", dtype=object))

    def unavailable(self, has_pv: np.ndarray) -> dict[str, str]:
        """indicator -> why it was not computed, for the ones that were not."""
        out = {}
        if not self.voltage or not self.current:
            out["bypass"] = f"needs {NEEDS['bypass']}; not in these data"
        if not self.neutral:
            out["neutral"] = f"needs {NEEDS['neutral']}; not in these data"
        if not self.export_measured.any() and has_pv.any():
            out["export_no_pv"] = f"needs {NEEDS['export_no_pv']}; not in these data"
        if not self.balance.any():
            for k in ("localisation", "observer", "balance_timing"):
                out[k] = f"needs {NEEDS[k]}; no transformer has one"
        return out

    def notes(self, has_pv: np.ndarray) -> list[str]:
        out = [f"{k}: {v}" for k, v in self.unavailable(has_pv).items()]
        no_exp = ~self.export_measured
        if no_exp.any():
            unknown = int((no_exp & has_pv).sum())
            out.append(f"export not measured for {int(no_exp.sum())} customer(s): 0 for "
                       f"{int((no_exp & ~has_pv).sum())} without PV"
                       + (f", unknown for {unknown} with PV" if unknown else ""))
        if (self.balance & ~self.balance_varh).any():
            out.append(f"{int((self.balance & ~self.balance_varh).sum())} balance meter(s) without "
                       f"reactive energy: load loss assumes power factor {ASSUMED_PF}")
        for kind in ("fitted", "nameplate"):
            n = int((self.loss_model == kind).sum())
            if n and not self.voltage:
                out.append(f"technical loss {kind} for {n} transformer(s)"
                           + (" (fitted on each one's quiet days)" if kind == "fitted" else
                              " (too few quiet days to fit; cable loss not modelled)"))
        return out


@dataclass
class Report:
    net_wh: np.ndarray  # (N, T) customer net energy
    quality: np.ndarray  # (N, T) int8
    flags: np.ndarray  # (N, T) uint8
    balance: kb.Balance  # per transformer
    feeder_balance: kb.Balance
    technical_wh: np.ndarray  # (X, T)
    ntl_series_wh: np.ndarray  # (X, T)
    ntl_wh: np.ndarray  # (X,) whole period
    ntl_sigma_wh: np.ndarray  # (X,)
    revenue_at_risk: np.ndarray  # (X,)
    suspects: sc.Suspects
    overload: np.ndarray  # (X, 4)
    voltage: np.ndarray  # (N, 3)
    imbalance: np.ndarray  # (X, 2)
    outages: ko.Outages
    region_wh: np.ndarray  # (R, T)
    forecast_error: list[dict[str, float]]  # per region, Holt-Winters on the last day held out
    derived: Derived  # per-interval NTL sigma, region balance, profile and forecast
    inputs: Inputs | None = None
    notes: tuple[str, ...] = ()  # what the data lacked and what the run assumed instead
    estimated_wh: np.ndarray | None = None  # (X,) customer energy in ESTIMATED intervals


def _mean_pairs(a: np.ndarray) -> np.ndarray:
    """Instant values (., K) -> interval means (., K - 1), NaN-tolerant at one end."""
    out: np.ndarray = np.nanmean(np.stack([a[:, :-1], a[:, 1:]]), axis=0)
    return out


def run(feed: Feed, *, block: int = 24, day: int = 96,
        vee_filled: np.ndarray | None = None) -> Report:
    """`vee_filled` (M, K): customer instants whose register came from the post-VEE layer
    (data/vee_fill.py); the intervals touching them are marked ESTIMATED."""
    topo, c, b = feed.topology, feed.customers, feed.balance
    inputs = Inputs.of(feed)
    rep = replaced_marks(c.status, c.present)
    imp, q_imp, f_imp = intervals(c, c.import_wh, feed, rep)
    exp, q_exp, f_exp = intervals(c, c.export_wh, feed, rep)
    # An export register the data do not have is "not measured": 0 for a customer the archive
    # says cannot export (no PV), unknown (NaN) for one with PV (Inputs.export_unknown).
    no_exp = ~inputs.export_measured & ~topo.has_pv
    exp = np.where(no_exp[:, None], 0.0, exp)
    q_exp = np.where(no_exp[:, None], q_imp, q_exp)
    f_exp = np.where(no_exp[:, None], np.uint8(0), f_exp)
    net = imp - exp
    quality = np.maximum(q_imp, q_exp)
    if vee_filled is not None:
        touched = vee_filled[:, :-1] | vee_filled[:, 1:]
        quality = np.where(touched, np.maximum(quality, ki.Q_ESTIMATED), quality).astype(np.int8)
    flags = f_imp | f_exp
    # a balance meter without an export register: nothing flows back through that transformer
    b_exp = np.where(inputs.balance_export[:, None], intervals(b, b.export_wh, feed)[0], 0.0)
    b_imp = intervals(b, b.import_wh, feed)[0] - b_exp
    b_q = intervals(b, b.import_varh, feed)[0] - intervals(b, b.export_varh, feed)[0]
    # no reactive energy at a balance meter: its apparent power assumes the stated power factor
    b_q = np.where(inputs.balance_varh[:, None], b_q, b_imp * np.tan(np.arccos(ASSUMED_PF)))
    to_w = 3600.0 / feed.step_s
    n_tx = len(topo.transformer_ids)

    with np.errstate(all="ignore"):
        cable = _mean_pairs(kl.cable_loss_w(b.v, c.v, c.i, topo.tx_of))
    k = topo.load_loss_w / topo.rating_va**2
    bal = kb.energy_balance(b_imp, net, topo.tx_of)
    # the days each transformer's loss changes: its quiet prefix for the loss fit, and the days
    # the balance-timing indicator looks at
    change_days = ko_obs.change_days(bal.loss_wh, b_imp, day)
    prefix = ko_obs.quiet_prefix(change_days, b_imp.shape[1] // day)
    no_load, k_fit = topo.no_load_w, k
    if not inputs.voltage:
        # No voltages, so no measured cable loss: the technical loss (transformer and cables)
        # is fitted on each transformer's own loss series over its quiet prefix, where there
        # are at least MIN_FIT_DAYS quiet days; elsewhere the nameplate (cables unmodelled).
        s_va = np.hypot(b_imp, b_q) * to_w
        ok = (np.arange(b_imp.shape[1])[None, :] < (prefix * day)[:, None]) & ~bal.low_confidence
        a_fit, b_fit, _n = kl.fit_loss_model(bal.loss_wh * to_w, s_va, ok)
        use = (prefix >= MIN_FIT_DAYS) & np.isfinite(a_fit) & np.isfinite(b_fit) & (b_fit >= 0)
        no_load = np.where(use, a_fit, topo.no_load_w)
        k_fit = np.where(use, b_fit, k)
        inputs.loss_model = np.where(use, "fitted", "nameplate")
    tech_w = kl.technical_loss_w(b_imp * to_w, b_q * to_w, topo.rating_va, no_load, k_fit, cable)
    tech_wh = tech_w / to_w
    ntl_series = bal.loss_wh - tech_wh
    has_in = ~np.isnan(b_imp)
    cust_abs = np.nansum(np.abs(net), axis=1)
    ntl, sigma = kl.ntl_with_uncertainty(
        bal.period_loss_wh,
        np.where(has_in, tech_wh, 0.0).sum(1),
        np.where(has_in, b_imp, 0.0).sum(1),
        np.bincount(topo.tx_of, weights=cust_abs**2, minlength=n_tx),
    )
    tariff = np.bincount(topo.tx_of, weights=topo.tariff_per_kwh, minlength=n_tx) / np.maximum(
        np.bincount(topo.tx_of, minlength=n_tx), 1
    )
    f = feed.feeders
    f_exp = np.where(has(f.export_wh)[:, None], intervals(f, f.export_wh, feed)[0], 0.0)
    f_in = intervals(f, f.import_wh, feed)[0] - f_exp
    feeder_bal = kb.energy_balance(f_in, net, np.ascontiguousarray(topo.feeder_of_tx[topo.tx_of]))

    suspects = _suspects(feed, imp, exp, net, flags, ntl_series, bal.low_confidence, ntl, block, day,
                         inputs, change_days, b_imp)

    with np.errstate(all="ignore"):
        vmax = np.nanmax(np.where(np.isnan(c.v), -np.inf, c.v), axis=2)
    s_va = np.hypot(b_imp, b_q) * to_w
    n_reg = len(topo.region_ids)
    region_of_meter = np.ascontiguousarray(topo.region_of_feeder[topo.feeder_of_tx[topo.tx_of]])
    region_wh, _ = kb.group_sum_rows(net, region_of_meter, n_reg)
    errors = [
        kf.holdout_error(np.ascontiguousarray(region_wh[r]), day, day)
        if region_wh.shape[1] >= 3 * day
        else {"mae": float("nan"), "mape_pct": float("nan")}
        for r in range(n_reg)
    ]
    return Report(
        net,
        quality,
        flags,
        bal,
        feeder_bal,
        tech_wh,
        ntl_series,
        ntl,
        sigma,
        kl.revenue_at_risk(ntl, tariff),
        suspects,
        kq.overload(s_va, topo.rating_va),
        kq.voltage_band(c.v),
        kq.phase_imbalance(b.i),
        ko.outages(c.present, vmax, topo.tx_of, topo.feeder_of_tx, len(topo.feeder_ids),
                   polled=c.polled),
        region_wh,
        errors,
        derive(topo, net, bal, tech_wh, feeder_bal, region_wh, day),
        inputs,
        tuple(inputs.notes(topo.has_pv)),
        # how much of each transformer's customer energy rests on estimates (the analytics'
        # own bridging of short gaps, and VEE's where the post-VEE layer was read)
        np.bincount(topo.tx_of, weights=np.nansum(
            np.where(quality == ki.Q_ESTIMATED, np.abs(net), 0.0), axis=1), minlength=n_tx),
    )


def _suspects(
    feed: Feed,
    imp: np.ndarray,
    exp: np.ndarray,
    net: np.ndarray,
    flags: np.ndarray,
    ntl_series: np.ndarray,
    low_confidence: np.ndarray,
    ntl: np.ndarray,
    block: int,
    day: int,
    inputs: Inputs,
    change_days: list[list[int]],
    input_wh: np.ndarray,
) -> sc.Suspects:
    topo, c = feed.topology, feed.customers
    s_rep = np.hypot(c.p_w, c.q_var)
    # PV customers' net follows the sun, not their habits: their pattern indicators look only at
    # intervals when no PV customer exported (the night, in effect), found from the data.
    pv_hours = np.nansum(np.where(topo.has_pv[:, None], exp, 0.0), axis=0) > 0
    e = np.ascontiguousarray(np.where(topo.has_pv[:, None] & pv_hours[None, :], np.nan, net))
    peer = ktp.peer_profiles(e, topo.cls, topo.tx_of, topo.has_pv)
    peer_for_gaps = np.ascontiguousarray(np.where(np.isnan(e), np.nan, peer))  # skips masked PV hours
    mv, m_first, m_last = ktm.meter_indicators(
        imp, exp, flags, c.v, c.i, c.i_n, s_rep, c.status, c.present, topo.phases, topo.has_pv, peer_for_gaps
    )
    cp = ktp.change_point(e, peer, block=block)
    pdv = ktp.peer_deviation(e, peer, day=day)
    shortfall = np.ascontiguousarray(cp[:, 2:3] * peer - e)
    # A register rollback puts weeks of "loss" into one interval; that spike is already explained
    # (and flagged), and left in it would swamp every other customer's correlation.
    n_tx = ntl_series.shape[0]
    rolled = kb.group_sum_rows(((flags & ki.FLAG_ROLLBACK) != 0).astype(np.float64), topo.tx_of, n_tx)[0] > 0
    # An interval whose balance is low-confidence (customers' values missing: a late poll, the
    # window's first instants, a gap) shows their whole consumption as "loss". That is unknown,
    # not evidence: correlating honest meters with it ranked them as thieves. Left out.
    ntl_clean = np.ascontiguousarray(np.where(rolled | low_confidence, np.nan, ntl_series))
    loc = ktp.localisation(shortfall, ntl_clean, topo.tx_of)
    raw = {
        "flags": mv[:, 3],
        "export_no_pv": mv[:, 2],
        "bypass": mv[:, 0],
        "neutral": mv[:, 1],
        "change_point": cp[:, 0],
        "change_point_drop": cp[:, 1],
        "peer_dev": pdv[:, 0],
        "localisation": loc,
        "comms_drop": mv[:, 4],
    }
    obs = ko_obs.attribute(ntl_clean, net, topo.tx_of, day, input_wh=input_wh)
    raw["observer"] = ko_obs.calibrated(obs.f_stat)
    raw["observer_coef"] = obs.coef
    # the customer's own series must have changed when the balance says its theft began: an
    # attribution to a customer whose data did not change that day is the regression's, not its
    raw["observer_own_change"] = ko_obs.own_change_at(net, obs.start, day)
    raw["balance_timing"], _stat, _when = ko_obs.timing_match(net, topo.tx_of, change_days, day)
    # a drop the balance meter did not see as loss is a customer using less, not a theft: on
    # real households most strong change points are holidays and new habits (docs/analytics.md)
    has_segment = cp[:, 3] >= 0
    short = segment_shortfall(e, peer, cp, block, clip=False)
    raw["change_point_balance"] = ko_obs.balance_agreement(
        ntl_clean, topo.tx_of, segment_mask(cp, block, net.shape[1]), short, has_segment, day)
    for name in inputs.unavailable(topo.has_pv):
        raw[name] = np.full(len(net), np.nan)  # not computed: no evidence, never a zero reading
    ev = sc.evidence(raw)
    score = sc.combine(ev)
    # own estimate: rolled-back register + shortfall over the change-point segment
    rollback_wh = -np.where((flags & ki.FLAG_ROLLBACK) != 0, np.minimum(imp, 0.0), 0.0).sum(1)
    gap = np.maximum(short, 0.0)  # the clipped shortfall: what the meter fell short
    fired = ev[:, 4] > 0.5
    estimate = rollback_wh + np.where(fired, np.nansum(gap, axis=1), 0.0)
    allocated = sc.allocate(ntl, topo.tx_of, score, estimate)
    strongest = np.argmax(sc.WEIGHTS[None, :] * ev, axis=1)
    period = np.full((len(score), 2), -1, np.int64)
    meter_col = {0: 3, 1: 2, 2: 0, 3: 1, 7: 4}  # score column -> meter_indicators column
    for s_col, m_col in meter_col.items():
        sel = strongest == s_col
        period[sel, 0], period[sel, 1] = m_first[sel, m_col], m_last[sel, m_col]
    for s_col in (4, 6):
        sel = (strongest == s_col) & (cp[:, 3] >= 0)
        period[sel, 0], period[sel, 1] = cp[sel, 3] * block, cp[sel, 4] * block - 1
    sel = (strongest == 5) & (pdv[:, 1] >= 0)
    period[sel, 0], period[sel, 1] = pdv[sel, 1] * day, (pdv[sel, 1] + 1) * day - 1
    return sc.Suspects(score, ev, raw, estimate, allocated, period)


def segment_mask(cp: np.ndarray, block: int, n_t: int) -> np.ndarray:
    """(N, T) bool: the intervals of each meter's change-point segment (`cp` columns 3, 4:
    first and end block; none where -1)."""
    t_idx = np.arange(n_t)[None, :]
    first = np.where(cp[:, 3] >= 0, cp[:, 3] * block, n_t)[:, None]
    end = np.where(cp[:, 4] >= 0, cp[:, 4] * block, 0)[:, None]
    return (t_idx >= first) & (t_idx < end)


def segment_shortfall(e: np.ndarray, peer: np.ndarray, cp: np.ndarray, block: int, *,
                      clip: bool = True) -> np.ndarray:
    """(N, T) Wh each meter fell short of its own level inside its change-point segment:
    max(0, L_out x peer_t - e_t) for t in the segment (`segment_mask`), 0 outside it and where
    e or peer is missing. L_out is the meter's level against its peers outside the segment.
    `clip=False` keeps the intervals above the level as negative shortfall: the net energy a
    report that only moves consumption in time (a flat or reversed day) does not miss."""
    inside = segment_mask(cp, block, e.shape[1])
    level_out = _level_outside(e, peer, inside)
    with np.errstate(invalid="ignore"):
        short = level_out[:, None] * peer - e
        gap = np.where(inside, np.maximum(short, 0.0) if clip else short, 0.0)
    return np.nan_to_num(gap, nan=0.0)


def _level_outside(net: np.ndarray, peer: np.ndarray, inside: np.ndarray) -> np.ndarray:
    ok = ~inside & ~np.isnan(net) & ~np.isnan(peer)
    num = np.where(ok, net, 0.0).sum(1)
    den = np.where(ok, peer, 0.0).sum(1)
    with np.errstate(all="ignore"):
        out: np.ndarray = np.where(den > 0, num / den, np.nan)
    return out
