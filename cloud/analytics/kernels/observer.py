"""The balance meter as an observer: which customers' under-reporting explains a transformer's loss.

Energy only: these use nothing but interval energy of the customers and of the transformer's
balance meter, so they run on any MDM export with a balance meter per transformer.

1. Quiet prefix (`quiet_prefix`). Per transformer, the days before its loss changes: the first
   day d that splits the daily loss ratio y_d = loss_d / input_d, or its within-day spread
   (std of the interval loss / mean input), into two segments whose means differ by more than
   `z_min` standard errors (a two-sample z of the best split, Welch's standard error). A theft
   from day d on adds a step to the ratio; one that moves energy within the day (reported =
   the day's mean, or the day reversed) adds a step to the spread. No split: the whole period
   is quiet.
2. Technical loss fitted on the loss series itself (`cloud.analytics.kernels.loss.fit_loss_model`
   over the quiet prefix: loss = a + b S^2), used where the data have no reactive energy and
   no voltages to measure it; the caller decides.
3. Attribution (`attribute`). Each customer's typical energy per slot of the day m_i(h) is the
   mean over the quiet prefix (the median over all days where the prefix is shorter than
   `min_days`). After the prefix, its shortfall is s_i,t = m_i(h_t) - r_i,t (what it used to
   draw minus what it reports). The transformer's NTL series y_t = loss_t - technical_t is
   then a non-negative combination of its customers' shortfalls (Yip et al. 2017's observer
   regression with the customer's own past as the reference):

       y_t ~ sum_i c_i s_i,t,   c_i >= 0      (scipy.optimize.nnls)

   A thief's c is near 1 (its shortfall is what the balance meter misses); an honest
   customer's is near 0. The evidence is the drop in the residual sum of squares when the
   customer is left out, as an F statistic: F_i = (RSS_-i - RSS) / (RSS / (T - p)). Residuals
   of half-hourly energy are autocorrelated, so F is not chi^2(1) under the null; the caller
   divides by the population's inflation (median F / 0.455, the median of chi^2(1): "genomic
   control"), which calibrates the statistic on the data it runs on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import lsq_linear

CHI2_1_MEDIAN = 0.4549364231195724  # median of the chi-squared distribution with 1 dof


def _best_split(y: np.ndarray, min_seg: int) -> tuple[int, float]:
    """(first day of the second segment, |z|) of the best split of `y` (NaN-free)."""
    n = len(y)
    best, best_z = n, 0.0
    for d in range(min_seg, n - min_seg + 1):
        a, b = y[:d], y[d:]
        se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        if se <= 0:
            continue
        z = abs(b.mean() - a.mean()) / se
        if z > best_z:
            best, best_z = d, float(z)
    return best, best_z


def change_days(loss_wh: np.ndarray, input_wh: np.ndarray, day: int, *, z_min: float = 5.0,
                min_seg: int = 3) -> list[list[int]]:
    """Every day on which each transformer's daily loss ratio or its within-day spread changes
    (binary segmentation: the best split of a segment, if its |z| >= `z_min`, then each side
    again), sorted. `loss_wh`, `input_wh`: (X, T) interval energy."""
    x, t = loss_wh.shape
    n_days = t // day
    out: list[list[int]] = []
    for j in range(x):
        lo = loss_wh[j, : n_days * day].reshape(n_days, day)
        inp = input_wh[j, : n_days * day].reshape(n_days, day)
        # a day without any reading is NaN here (skipped below); np.errstate does not cover
        # numpy's "Mean of empty slice" warning, which pytest would turn into an error
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_in = np.nanmean(inp, axis=1)
            series = (np.nanmean(lo, axis=1) / mean_in, np.nanstd(lo, axis=1) / mean_in)
        found: set[int] = set()
        for sr in series:
            ok = np.isfinite(sr)
            days = np.flatnonzero(ok)
            y = sr[ok]
            todo = [(0, len(y))]
            while todo:
                a, b = todo.pop()
                if b - a < 2 * min_seg:
                    continue
                d, z = _best_split(y[a:b], min_seg)
                if z < z_min or d >= b - a:
                    continue
                found.add(int(days[a + d]))
                todo += [(a, a + d), (a + d, b)]
        out.append(sorted(found))
    return out


def quiet_prefix(days_of_tx: list[list[int]], n_days: int) -> np.ndarray:
    """(X,) int64: whole days before each transformer's first loss change (`change_days`), all
    `n_days` where it has none. Binary segmentation splits the left side of its first split
    again, so its earliest day is the earliest change: a small early theft before a large one."""
    return np.array([min(d) if d else n_days for d in days_of_tx], np.int64)


CHANGE_STATS = ("energy", "zeros", "flatness", "shape", "ceiling")


def _z2(a: np.ndarray, b: np.ndarray) -> float:
    """Welch's z of mean(a) - mean(b), NaN-free inputs of at least 2 values each."""
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return float((a.mean() - b.mean()) / se) if se > 0 else 0.0


def _zp(k_a: float, n_a: int, k_b: float, n_b: int) -> float:
    """Two-proportion z of p_b - p_a (pooled), 0 where undefined."""
    p = (k_a + k_b) / (n_a + n_b)
    se = np.sqrt(p * (1 - p) * (1 / n_a + 1 / n_b))
    return float((k_b / n_b - k_a / n_a) / se) if se > 0 else 0.0


def own_change(r: np.ndarray, d: int, day: int, *, window_days: int = 14, zero_wh: float = 0.5
               ) -> np.ndarray:
    """(len(CHANGE_STATS),) z-scores of how a customer's own series changed at day `d`, the
    windows of up to `window_days` days before and after (positive = more suspect):
    energy (the daily energy fell), zeros (more intervals read ~0), flatness (the days' profiles
    got flatter: within-day coefficient of variation fell), shape (the days correlate less with
    the profile of the days before d), ceiling (more intervals within 2 % of the window's
    maximum). `r` (T,) Wh."""
    n_days = len(r) // day
    days = r[: n_days * day].reshape(n_days, day)
    bef = days[max(0, d - window_days): d]
    aft = days[d: min(n_days, d + window_days)]
    bef = bef[~np.isnan(bef).any(axis=1)]
    aft = aft[~np.isnan(aft).any(axis=1)]
    out = np.zeros(len(CHANGE_STATS))
    if len(bef) < 2 or len(aft) < 2:
        return out
    out[0] = _z2(bef.sum(1), aft.sum(1))
    out[1] = _zp(float((bef <= zero_wh).sum()), bef.size, float((aft <= zero_wh).sum()), aft.size)
    with np.errstate(all="ignore"):
        cv_b = np.nan_to_num(bef.std(1) / bef.mean(1))
        cv_a = np.nan_to_num(aft.std(1) / aft.mean(1))
    out[2] = _z2(cv_b, cv_a)
    prof = bef.mean(0)
    if prof.std() > 0:
        def corr(rows: np.ndarray) -> np.ndarray:
            rc = rows - rows.mean(1, keepdims=True)
            pc = prof - prof.mean()
            den = np.sqrt((rc**2).sum(1) * (pc**2).sum())
            return np.where(den > 0, (rc @ pc) / np.where(den > 0, den, 1.0), 0.0)
        out[3] = _z2(corr(bef), corr(aft))
    top = max(float(bef.max()), float(aft.max()))
    if top > 0:
        out[4] = _zp(float((bef >= 0.98 * aft.max()).sum()), bef.size,
                     float((aft >= 0.98 * aft.max()).sum()), aft.size)
    return out


def timing_match(reported_wh: np.ndarray, tx_of: np.ndarray, days_of_tx: list[list[int]], day: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per customer, the strongest own change (`own_change`) on a day its transformer's loss
    changed: (N,) z (NaN where the transformer shows no change), (N,) which statistic (index
    into CHANGE_STATS, -1), (N,) the day (-1). A customer that changes when the balance meter
    starts to miss energy is what a revenue-protection engineer visits first."""
    n = len(reported_wh)
    z = np.full(n, np.nan)
    which = np.full(n, -1, np.int64)
    when = np.full(n, -1, np.int64)
    for i in range(n):
        for d in days_of_tx[int(tx_of[i])]:
            zs = own_change(reported_wh[i], d, day)
            k = int(np.argmax(zs))
            if np.isnan(z[i]) or zs[k] > z[i]:
                z[i], which[i], when[i] = zs[k], k, d
    return z, which, when


@dataclass(frozen=True)
class Attribution:
    coef: np.ndarray  # (N,) c_i, NaN where not computed
    f_stat: np.ndarray  # (N,) F_i, NaN where not computed
    start: np.ndarray  # (N,) first interval of the analysed segment (-1: none)


KINDS = ("share", "shortfall", "zero")
# upper bounds of the coefficients: a meter reporting a fraction a of the truth misses
# (1 - a) / a of what it reports (a >= 0.1: at most 9x); the other columns estimate the
# missing energy itself, so a thief's coefficient is near 1 (energy is conserved)
UPPER = np.array([9.0, 1.5, 1.5])
# and lower bounds of a coefficient that is evidence: a share below 0.15 (a meter missing less
# than 13 % of the truth) or a shortfall/zero coefficient below 0.3 is what a technical-loss
# model's error looks like on a large customer's load (loss ~ S^2), not a theft
LOWER = np.array([0.15, 0.3, 0.3])


def candidate_columns(r: np.ndarray, day: int, *, min_days: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Every candidate column of every customer: (n, kinds, days, T) and the change day of each.

    A column is 0 before its change day d and, from d on:
    - share: r_t, what the meter reports (a meter that reports a fraction of the truth: the
      missing part is proportional to what it reports; h1, h3);
    - shortfall: m^d(h_t) - r_t, its typical profile (the mean per slot of the day over the
      days before d) minus what it reports (flat, reversed or cut reports: h4-h6, capping);
    - zero: m^d(h_t) where r_t = 0 (a meter that reads nothing while its customer draws: h2,
      bypass).
    (A per-day level and a step of the mean were tried as further kinds: every customer's step
    looks alike, so they let honest customers absorb the NTL of several thieves.)
    Candidate days d run from `min_days` to D - `min_days`. NaN readings give 0."""
    n, t = r.shape
    n_days = t // day
    ds = np.arange(min_days, n_days - min_days + 1)
    slot = np.arange(t) % day
    days = r[:, : n_days * day].reshape(n, n_days, day)
    valid = ~np.isnan(days)
    csum = np.cumsum(np.where(valid, days, 0.0), axis=1)
    ccnt = np.cumsum(valid, axis=1)
    with np.errstate(all="ignore"):
        base = np.nan_to_num(csum / ccnt)  # base[i, d - 1] = mean profile over days < d
    rv = np.nan_to_num(r)
    cols = np.zeros((n, len(KINDS), len(ds), t))
    after = np.arange(t)[None, :] >= (ds * day)[:, None]  # (len(ds), T)
    for i in range(n):
        prof = base[i, ds - 1][:, slot]  # (len(ds), T): m^d(h_t)
        cols[i, 0] = np.where(after, rv[i][None, :], 0.0)
        cols[i, 1] = np.where(after, prof - rv[i][None, :], 0.0)
        cols[i, 2] = np.where(after & (rv[i] <= 0)[None, :], prof, 0.0)
    return cols, ds * day


def _gain(proj: np.ndarray, ss: np.ndarray, usable: np.ndarray, ub: np.ndarray,
          lb: np.ndarray | None = None) -> np.ndarray:
    """The fall of the residual's sum of squares when one column enters alone with the best
    coefficient in [0, ub]: 2 c proj - c^2 ss, c = clip(proj / ss, 0, ub); 0 where that c is
    below `lb` (no evidence at that size)."""
    c = np.clip(proj / np.where(usable, ss, 1.0), 0.0, ub)
    ok = usable if lb is None else usable & (c >= lb)
    return np.where(ok, 2 * c * proj - c * c * ss, 0.0)


def _fit(cols: np.ndarray, b: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """Least squares with coefficients in [0, ub] (scipy.optimize.lsq_linear)."""
    return lsq_linear(cols.T, b, bounds=(np.zeros(len(ub)), ub), method="bvls").x


def attribute(ntl_wh: np.ndarray, reported_wh: np.ndarray, tx_of: np.ndarray, day: int, *,
              min_days: int = 3, min_intervals: int = 48, f_enter: float = 4.0,
              input_wh: np.ndarray | None = None) -> Attribution:
    """Per customer, how much of its transformer's NTL it explains (module doc), by forward
    selection: the candidate column (any customer, kind and change day) that removes the most of
    the residual's sum of squares enters, the selected columns are refitted jointly with
    non-negative coefficients (scipy.optimize.nnls), and so on while the entering column's F
    is at least `f_enter`. A customer enters at most once. F of a selected customer: the rise of
    the RSS when it leaves the final fit, less what the best column of a customer outside the
    fit would take back in its place (the attribution must be to this customer, not to anyone
    alike), over the residual variance; of one never selected: its best column's gain on the
    final residual over that variance.

    `ntl_wh` (X, T) per transformer (NaN = unknown interval, left out), `reported_wh` (N, T) the
    customers' interval energy (NaN = not read), `tx_of` (N,)."""
    n, t = reported_wh.shape
    coef = np.full(n, np.nan)
    f_stat = np.full(n, np.nan)
    start = np.full(n, -1, np.int64)
    for x in range(ntl_wh.shape[0]):
        members = np.flatnonzero(tx_of == x)
        y = ntl_wh[x]
        ok = np.isfinite(y)
        if len(members) == 0 or ok.sum() < max(min_intervals, 4 * len(members)) or t // day < 2 * min_days:
            continue
        cols, _starts = candidate_columns(reported_wh[members], day, min_days=min_days)
        m, nk, nd, _ = cols.shape
        flat = cols[..., ok].reshape(m * nk * nd, int(ok.sum()))
        b = y[ok]
        if input_wh is not None and np.isfinite(input_wh[x, ok]).all():
            # the technical-loss model's error follows the load (a + b S^2 misfit): partial the
            # transformer's input and its square out of the NTL and of every column first, so a
            # large customer's load cannot stand in for it (Frisch-Waugh)
            z = np.stack([input_wh[x, ok], input_wh[x, ok] ** 2], axis=1)
            q, _ = np.linalg.qr(z / np.maximum(np.abs(z).max(axis=0), 1e-12))
            b = b - q @ (q.T @ b)
            flat = flat - (flat @ q) @ q.T
        ss = np.einsum("ij,ij->i", flat, flat)
        usable = ss > 0
        chosen: list[int] = []  # row of `flat` per selected customer
        who: list[int] = []
        res = b.copy()
        c = np.zeros(0)
        ub = np.broadcast_to(UPPER[None, :, None], (m, nk, nd)).reshape(-1)
        lb = np.broadcast_to(LOWER[None, :, None], (m, nk, nd)).reshape(-1)
        while len(who) < m:
            dof = max(len(b) - len(who) - 1, 1)
            var = float(res @ res) / dof
            gain = _gain(flat @ res, ss, usable, ub, lb).reshape(m, nk * nd)
            gain[who] = 0.0
            best = int(np.argmax(gain))
            k, col = divmod(best, nk * nd)
            if var <= 0 or gain[k, col] / var < f_enter:
                break
            chosen.append(k * nk * nd + col)
            who.append(k)
            c = _fit(flat[chosen], b, ub[chosen])
            res = b - flat[chosen].T @ c
        rss = float(res @ res)
        dof = max(len(b) - len(who), 1)
        var = rss / dof if rss > 0 else np.finfo(float).tiny
        gain = _gain(flat @ res, ss, usable, ub, lb).reshape(m, nk * nd)
        for k in range(m):
            i = members[k]
            if k in who:
                j = who.index(k)
                rest = [row for q, row in enumerate(chosen) if q != j]
                e = b - flat[rest].T @ _fit(flat[rest], b, ub[rest]) if rest else b
                r_k = float(e @ e)
                # identifiability: what the best column of a customer outside the fit would
                # explain in its place. Customers with alike profiles (the simulator's same-class
                # households) can each explain one thief's NTL: then none of them is evidence.
                alt = _gain(flat @ e, ss, usable, ub, lb).reshape(m, nk * nd)
                alt[who] = 0.0
                small = c[j] < lb[chosen[j]]  # refitted below what is evidence
                f_stat[i] = 0.0 if small else max(r_k - rss - float(alt.max()), 0.0) / var
                coef[i] = c[j]
                start[i] = int(((chosen[j] % (nk * nd)) % nd + min_days) * day)
            else:
                f_stat[i] = float(gain[k].max()) / var
                coef[i] = 0.0
    return Attribution(coef, f_stat, start)


def own_change_at(reported_wh: np.ndarray, start: np.ndarray, day: int) -> np.ndarray:
    """(N,) the largest `own_change` z of each customer at its attributed change (`start`, an
    interval; NaN where -1): whether its own series changed when the balance says it began."""
    out = np.full(len(start), np.nan)
    for i, s0 in enumerate(start):
        if s0 >= 0:
            out[i] = float(own_change(reported_wh[i], int(s0) // day, day).max())
    return out


def calibrated(f_stat: np.ndarray) -> np.ndarray:
    """F divided by the population's inflation (median F over customers with a value / the
    chi^2(1) median), never below 1: the statistic on the scale of chi^2(1)."""
    ok = np.isfinite(f_stat)
    if not ok.any():
        return f_stat.copy()
    lam = max(float(np.median(f_stat[ok])) / CHI2_1_MEDIAN, 1.0)
    return f_stat / lam


def balance_agreement(ntl_wh: np.ndarray, tx_of: np.ndarray, inside: np.ndarray,
                      shortfall_wh: np.ndarray, candidate: np.ndarray, day: int, *,
                      min_days: int = 3, min_run_days: int = 14) -> np.ndarray:
    """(N,) whether the balance meter saw the energy a meter's drop says is missing.

    A meter that reports s Wh per interval less than its level inside its change-point
    segment is stealing them, or its customer uses less. Stolen energy still flows through
    the transformer, so its loss series rises by s over the segment; energy not used does
    not. With the loss series' daily means L_d (`day` intervals a day), its step
    dL = mean(L_d, d inside) - mean(L_d, d outside), and the step's standard error
    se = sigma sqrt(1/n_in + 1/n_out) (sigma: 1.4826 MAD of L_d about the two means), the
    log likelihood ratio of "dL = s" against "dL = 0" is s (dL - s/2) / se^2, and

        agreement = min(1, 2 logistic(s (dL - s/2) / se^2))

    1 where the balance agrees or cannot tell (s small against se), towards 0 where the loss
    did not move by what the drop claims: a genuine drop in use, not a theft. NaN for meters
    not `candidate` (no change-point segment), transformers without a usable loss series,
    segments with fewer than `min_days` days inside or outside, and runs shorter than
    `min_run_days`: a week's seven daily losses, on a transformer where several thieves start
    on different days, give a step and a sigma too rough to veto anything.
    `inside` (N, T) bool: each meter's segment; `shortfall_wh` (N, T): its shortfall there,
    negative where it reports more than its level, so a day whose consumption is only moved
    in time nets to 0 (h5, h6: they take no energy, and the balance rightly sees none).
    (A joint fit of the loss on every candidate's shortfall, to tell apart meters that change
    together on a transformer with thieves, ranked no better on the tuning scenarios.)"""
    n, t = inside.shape
    n_days = t // day
    out = np.full(n, np.nan)
    if n_days < min_run_days:
        return out
    loss = ntl_wh[:, : n_days * day].reshape(ntl_wh.shape[0], n_days, day)
    count = np.isfinite(loss).sum(2)
    with np.errstate(all="ignore"):  # a day with under half its intervals is not judged
        daily = np.where(count >= day // 2, np.nansum(loss, axis=2) / count, np.nan)
    in_day = inside[:, : n_days * day].reshape(n, n_days, day).mean(2) >= 0.5
    for i in np.flatnonzero(candidate):
        ld = daily[int(tx_of[i])]
        ok = np.isfinite(ld)
        a, b = ld[ok & in_day[i]], ld[ok & ~in_day[i]]
        if len(a) < min_days or len(b) < min_days:
            continue
        step = float(a.mean() - b.mean())
        resid = np.concatenate([a - a.mean(), b - b.mean()])
        sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
        sigma = sigma or float(np.std(resid)) or 1e-9
        se2 = sigma**2 * (1.0 / len(a) + 1.0 / len(b))
        s = float(np.nan_to_num(shortfall_wh[i, inside[i]]).mean()) if inside[i].any() else 0.0
        x = float(np.clip(s * (step - s / 2.0) / se2, -50.0, 50.0))
        out[i] = min(1.0, 2.0 / (1.0 + np.exp(-x)))
    return out
