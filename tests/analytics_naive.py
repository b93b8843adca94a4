"""Plain NumPy/Python references for the cloud.analytics kernels (the stumpy `naive.py` idea).

Each one computes the same definition as its kernel a different, obviously-correct way (whole
array expressions, brute force over candidates) and is slow on purpose: tests compare the two
on random inputs with gaps, resets and NaN/inf.
"""

from __future__ import annotations

import numpy as np

from cloud.analytics.kernels.intervals import FLAG_RESET, FLAG_ROLLBACK, FLAG_ROLLOVER


def interval_energy(
    meter,
    ts_s,
    reg,
    replaced,
    modulus,
    *,
    t0,
    step,
    n_steps,
    max_gap_s=6 * 3600,
    slack_s=None,
    max_power_w=2.0e6,
):
    slack = step // 10 if slack_s is None else slack_s
    m_count = len(modulus)
    energy = np.zeros((m_count, n_steps))
    cover = np.zeros((m_count, n_steps))
    bridged = np.zeros((m_count, n_steps), bool)
    flags = np.zeros((m_count, n_steps), np.uint8)
    starts = t0 + step * np.arange(n_steps)
    for m in range(m_count):
        rows = np.flatnonzero(meter == m)
        if len(rows) < 2:
            continue
        a, b = rows[:-1], rows[1:]
        dt = (ts_s[b] - ts_s[a]).astype(float)
        ok = (dt > 0) & (dt <= max_gap_s) & ~np.isnan(reg[a]) & ~np.isnan(reg[b])
        raw = reg[b] - reg[a]
        wraps = (raw < 0) & (modulus[m] > 0) & (raw + modulus[m] <= max_power_w * dt / 3600.0)
        delta = np.where(replaced[b], reg[b], np.where(wraps, raw + modulus[m], raw))
        f = np.where(
            replaced[b], FLAG_RESET, np.where(raw >= 0, 0, np.where(wraps, FLAG_ROLLOVER, FLAG_ROLLBACK))
        )
        # overlap of every pair with every interval, as one (pairs, intervals) matrix
        lo = np.maximum(ts_s[a][:, None], starts[None, :])
        hi = np.minimum(ts_s[b][:, None], starts[None, :] + step)
        ov = np.where(ok[:, None], np.clip(hi - lo, 0, None), 0).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            energy[m] = (ov * np.where(ok, delta / dt, 0.0)[:, None]).sum(0)
        cover[m] = ov.sum(0)
        bridged[m] = ((ov > 0) & (dt > step + slack)[:, None]).any(0)
        for p in range(len(a)):
            flags[m] |= np.where(ov[p] > 0, f[p], 0).astype(np.uint8)
    missing = cover * 2 < step
    est = ~missing & (bridged | (cover < step - slack))
    with np.errstate(invalid="ignore", divide="ignore"):
        energy = np.where(
            missing, np.nan, np.where(est, energy * step / np.where(cover > 0, cover, 1), energy)
        )
    quality = np.where(missing, 3, np.where(est, 2, 0)).astype(np.int8)
    return energy, quality, flags


def group_sum(values, keys, n_keys):
    ok = ~np.isnan(values)
    return (
        np.bincount(keys[ok], weights=values[ok], minlength=n_keys),
        np.bincount(keys[ok], minlength=n_keys).astype(np.int64),
    )


@np.errstate(all="ignore")  # inf + -inf is NaN here as in the kernel, without a warning
def group_sum_rows(values, group, n_groups):
    sums = np.array([np.nansum(values[group == g], axis=0) for g in range(n_groups)]).reshape(n_groups, -1)
    counts = np.array([(~np.isnan(values[group == g])).sum(0) for g in range(n_groups)]).reshape(n_groups, -1)
    return sums, counts


def technical_loss_w(p_in_w, q_var, rating_va, no_load_w, k, cable_w):
    tx = no_load_w[:, None] + k[:, None] * (p_in_w**2 + q_var**2)
    tx = no_load_w[:, None] + k[:, None] * ((p_in_w - tx) ** 2 + q_var**2)
    return tx + np.nan_to_num(cable_w, nan=0.0)


def fit_loss_model(residual_w, s_va, ok):
    out = np.full((residual_w.shape[0], 2), np.nan)
    used = np.zeros(residual_w.shape[0], np.int64)
    for x in range(residual_w.shape[0]):
        sel = ok[x] & ~np.isnan(residual_w[x]) & ~np.isnan(s_va[x])
        used[x] = sel.sum()
        s2 = s_va[x, sel] ** 2
        if sel.sum() >= 3 and np.ptp(s2) > 0:
            design = np.stack([np.ones(sel.sum()), s2], axis=1)
            out[x] = np.linalg.lstsq(design, residual_w[x, sel], rcond=None)[0]
    return out[:, 0], out[:, 1], used


@np.errstate(all="ignore")
def cable_loss_w(v_tx, v, i, tx_of):
    drop = v_tx[tx_of] - v
    term = np.where(np.isnan(drop) | np.isnan(i) | ~(drop > 0), 0.0, i * drop).sum(2)
    out = np.zeros((v_tx.shape[0], v.shape[1]))
    np.add.at(out, tx_of, term)
    return out


def change_point(e, peer, *, block=24):
    n, n_t = e.shape
    nb = n_t // block
    out = np.full((n, 5), np.nan)
    out[:, 3:] = -1
    for m in range(n):
        r = np.full(nb, np.nan)
        for b in range(nb):
            sl = slice(b * block, (b + 1) * block)
            ok = np.isfinite(e[m, sl]) & np.isfinite(peer[m, sl])
            if ok.sum() * 2 >= block and peer[m, sl][ok].sum() > 0:
                r[b] = e[m, sl][ok].sum() / peer[m, sl][ok].sum()
        idx = np.flatnonzero(~np.isnan(r))
        rv = r[idx]
        if len(rv) < 3:
            continue
        level = np.median(rv)
        sigma = max(1.4826 * np.median(np.abs(np.diff(rv))) / np.sqrt(2), 0.02 * abs(level), 1e-9)
        k = len(rv)
        best = (-np.inf, 0, 0)
        for a in range(k):
            for b in range(a + 1, k + 1):
                if b - a == k:
                    continue
                inside = rv[a:b].mean()
                outside = np.concatenate([rv[:a], rv[b:]]).mean()
                z = (outside - inside) / sigma * np.sqrt((b - a) * (k - b + a) / k)
                if z > best[0]:
                    best = (z, a, b)
        z, a, b = best
        outside = np.concatenate([rv[:a], rv[b:]]).mean()
        out[m] = [z, 1 - rv[a:b].mean() / outside if outside > 0 else np.nan, level, idx[a], idx[b - 1] + 1]
    return out


def pearson(a, b):
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return np.nan
    x, y = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    if (x * x).sum() <= 1e-12 * ok.sum() or (y * y).sum() <= 1e-12 * ok.sum():
        return 0.0
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def peer_deviation(e, peer, *, day=96):
    out = np.full((e.shape[0], 2), np.nan)
    out[:, 1] = -1
    for m in range(e.shape[0]):
        devs = [
            (1 - pearson(e[m, d * day : (d + 1) * day], peer[m, d * day : (d + 1) * day]), d)
            for d in range(e.shape[1] // day)
            if (~np.isnan(e[m, d * day : (d + 1) * day])).sum() * 2 >= day
        ]
        if devs:
            best = max(devs, key=lambda x: (x[0], -x[1]))
            out[m] = best
    return out


def localisation(shortfall, ntl, tx_of):
    return np.array([pearson(shortfall[m], ntl[tx_of[m]]) for m in range(len(tx_of))])


def overload(s_va, rating_va, *, threshold=1.0):
    out = np.zeros((s_va.shape[0], 4))
    for x in range(s_va.shape[0]):
        load = s_va[x] / rating_va[x]
        over = np.nan_to_num(load, nan=-1.0) > threshold
        runs = [(len(r), s) for s, r in _runs_of(over)]
        best = max(runs, key=lambda x: (x[0], -x[1])) if runs else (0, -1)
        out[x] = [np.nanmax(np.append(load[~np.isnan(load)], 0.0)), over.sum(), best[0], best[1]]
    return out


def _runs_of(mask):
    out, t = [], 0
    while t < len(mask):
        if mask[t]:
            s = t
            while t < len(mask) and mask[t]:
                t += 1
            out.append((s, range(s, t)))
        else:
            t += 1
    return out


def voltage_band(v, *, v_nominal=230.0, band=0.10, dead_fraction=0.5):
    live = ~np.isnan(v) & (np.nan_to_num(v, nan=0.0) >= v_nominal * dead_fraction)
    outside = live & ((v < v_nominal * (1 - band)) | (v > v_nominal * (1 + band)))
    seen = live.any(2)
    n_seen = seen.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n_seen > 0, outside.any(2).sum(1) / n_seen, np.nan)
    vmin = np.where(n_seen > 0, np.where(live, v, np.inf).min((1, 2)), np.nan)
    vmax = np.where(n_seen > 0, np.where(live, v, -np.inf).max((1, 2)), np.nan)
    return np.stack([share, vmin, vmax], axis=1)


def phase_imbalance(i, *, limit=0.2, i_min=1.0):
    mean = i.mean(2)
    ok = ~np.isnan(i).any(2) & (np.nan_to_num(mean, nan=0.0) >= i_min)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = (i.max(2) - i.min(2)) / mean
    n = ok.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack(
            [
                np.where(n > 0, np.where(ok, u, 0).sum(1) / n, np.nan),
                np.where(n > 0, (ok & (u > limit)).sum(1) / n, np.nan),
            ],
            axis=1,
        )


def group_out(dead, group, n_groups, min_share, min_meters):
    out = np.zeros((n_groups, dead.shape[1]), bool)
    for g in range(n_groups):
        rows = dead[group == g]
        if len(rows):
            c = rows.sum(0)
            out[g] = (c >= min_meters) & (c >= min_share * len(rows))
    return out


def profile(y, period, *, offset=0):
    out = np.full((y.shape[0], period), np.nan)
    pos = (np.arange(y.shape[1]) + offset) % period
    for j in range(period):
        with np.errstate(invalid="ignore"):
            col = y[:, pos == j]
            n = (~np.isnan(col)).sum(1)
            out[:, j] = np.where(n > 0, np.nansum(col, axis=1) / np.maximum(n, 1), np.nan)
    return out


def holt_winters(y, period, horizon, *, alpha=0.1, beta=0.01, gamma=0.3):
    level = np.nanmean(y[:period])
    second = y[period : 2 * period]
    trend = (
        (np.nanmean(second) - level) / period if len(y) >= 2 * period and (~np.isnan(second)).any() else 0.0
    )
    season = list(np.nan_to_num(y[:period] - level, nan=0.0))
    for t in range(period, len(y)):
        s = season[t % period]
        if np.isnan(y[t]):
            level += trend
            continue
        new = alpha * (y[t] - s) + (1 - alpha) * (level + trend)
        trend = beta * (new - level) + (1 - beta) * trend
        season[t % period] = gamma * (y[t] - new) + (1 - gamma) * s
        level = new
    return np.array([level + (h + 1) * trend + season[(len(y) + h) % period] for h in range(horizon)])


def meter_indicators(
    imp,
    exp,
    ivl_flags,
    v,
    i,
    i_n,
    s_rep,
    status,
    present,
    phases,
    has_pv,
    peer,
    *,
    eps_wh=1.0,
    v_nominal=230.0,
    tol=0.1,
    i_min=0.2,
    window=8,
):
    from cloud.analytics.kernels.theft_meter import TAMPER_BITS

    n, n_t = imp.shape
    value = np.zeros((n, 5))
    first = np.full((n, 5), -1, np.int64)
    last = np.full((n, 5), -1, np.int64)

    def mark(m, j, hits_t):
        if len(hits_t):
            first[m, j], last[m, j] = min(hits_t), max(hits_t)

    with np.errstate(invalid="ignore", divide="ignore"):
        vmax_end = np.where(np.isnan(v[:, 1:]), -1.0, v[:, 1:]).max(2)  # (N, T) at each interval's end
    for m in range(n):
        both = ~np.isnan(imp[m]) & ~np.isnan(exp[m])
        seen_v = both & (vmax_end[m] >= 0)
        i_end = i[m, 1:]  # (T, 3) currents at each interval's end
        known = ~np.isnan(i_end).all(1)
        cur = np.nansum(np.abs(i_end), 1)
        byp = (seen_v & (imp[m] < eps_wh) & (exp[m] < eps_wh) & (vmax_end[m] > 0.5 * v_nominal)
               & (~known | (cur < i_min)))
        value[m, 0] = byp.sum() / seen_v.sum() if seen_v.sum() else 0.0
        mark(m, 0, np.flatnonzero(byp))
        if not has_pv[m]:
            ex = both & (exp[m] > eps_wh)
            value[m, 2] = ex.sum() / both.sum() if both.sum() else 0.0
            mark(m, 2, np.flatnonzero(ex))
        # neutral mismatch per instant
        mis = np.full(n_t + 1, np.nan)
        for k in np.flatnonzero(present[m]):
            if phases[m] == 1:
                big = max(i[m, k, 0], i_n[m, k])
                if big > i_min:
                    mis[k] = abs(i[m, k, 0] - i_n[m, k]) / big
            else:
                ok = ~np.isnan(v[m, k]) & ~np.isnan(i[m, k])
                vi, isum = (v[m, k, ok] * i[m, k, ok]).sum(), i[m, k, ok].sum()
                big = max(vi, s_rep[m, k])
                if isum > i_min and not np.isnan(s_rep[m, k]) and big > 0:
                    mis[k] = abs(vi - s_rep[m, k]) / big
        hit = ~np.isnan(mis) & (np.nan_to_num(mis) > tol)
        value[m, 1] = hit.sum() / (~np.isnan(mis)).sum() if (~np.isnan(mis)).sum() else 0.0
        mark(m, 1, np.minimum(np.flatnonzero(hit), n_t - 1))
        rb = (ivl_flags[m] & FLAG_ROLLBACK) != 0
        tamper = present[m] & ((status[m] & TAMPER_BITS) != 0)
        value[m, 3] = min(1.0, (rb.sum() + tamper.sum()) / n_t)
        mark(m, 3, np.concatenate([np.flatnonzero(rb), np.minimum(np.flatnonzero(tamper), n_t - 1)]))
        # comms gaps: peer-relative consumption in `window` intervals before vs after each gap
        for g0, rng in _runs_of(~present[m]):
            g1 = rng.stop

            def ratio(lo, hi, m=m):
                lo, hi = max(lo, 0), max(min(hi, n_t), 0)  # a negative end must not wrap round
                ok = ~np.isnan(imp[m, lo:hi]) & ~np.isnan(peer[m, lo:hi])
                sp = peer[m, lo:hi][ok].sum()
                return imp[m, lo:hi][ok].sum() / sp if sp > 0 else np.nan

            before, after = ratio(g0 - 1 - window, g0 - 1), ratio(g1, g1 + window)
            if before > 0 and not np.isnan(after) and 1 - after / before > value[m, 4]:
                value[m, 4] = min(1 - after / before, 1.0)
                first[m, 4], last[m, 4] = max(g0 - 1, 0), min(g1, n_t - 1)
    return value, first, last
