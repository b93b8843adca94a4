"""Theft indicators from consumption patterns: own history, peers, and the transformer's NTL.

All work on a meter's net interval energy e[t] (Wh, NaN = missing) next to `peer[t]`, the
mean profile of its peer group (same class on the same transformer, or the whole class when the
transformer has too few such customers; see `peer_profiles`), each peer scaled to mean 1.
- change point (sudden drop vs own history): blocks of `block` intervals give ratios
  r_b = sum(e) / sum(peer), which removes the daily shape, weekday and weather. For every
  segment [a, b) of blocks other than the whole span the mean inside is compared with the mean
  outside: z = (out - in) / sigma * sqrt(n_in * n_out / (n_in + n_out)), sigma the robust
  block-to-block noise (MAD of first differences / sqrt 2). Output: the largest z, the drop
  1 - in / out and the segment, plus the meter's level L = median(r_b);
- peer deviation: per day (`day` intervals) 1 - Pearson correlation of e with peer; a flat or
  constant day counts as correlation 0. Output: the largest daily value and its day;
Non-finite values (NaN, inf) count as missing everywhere here.
- balance localisation: Pearson correlation over intervals between the meter's shortfall
  (baseline - e, baseline = L x peer) and its transformer's NTL series.
"""

from __future__ import annotations

import numpy as np

from cloud.analytics.kernels import checks
from cloud.analytics.kernels.balance import group_sum_rows
from cloud.analytics.kernels.config import kernel


@kernel
def _change_point(e: np.ndarray, peer: np.ndarray, block: int, out: np.ndarray) -> None:
    n, n_t = e.shape
    nb = n_t // block
    for m in range(n):
        r = np.full(nb, np.nan)
        for b in range(nb):
            se = 0.0
            sp = 0.0
            cnt = 0
            for t in range(b * block, (b + 1) * block):
                if np.isfinite(e[m, t]) and np.isfinite(peer[m, t]):  # inf is a broken value: missing
                    se += e[m, t]
                    sp += peer[m, t]
                    cnt += 1
            if cnt * 2 >= block and sp > 0.0:
                r[b] = se / sp
        rv = r[~np.isnan(r)]
        out[m, :] = np.nan
        out[m, 3] = -1.0
        out[m, 4] = -1.0
        if len(rv) < 3:
            continue
        level = np.median(rv)
        out[m, 2] = level
        sigma = 1.4826 * np.median(np.abs(rv[1:] - rv[:-1])) / np.sqrt(2.0)
        sigma = max(sigma, 0.02 * abs(level), 1e-9)  # a perfectly flat series must not divide by 0
        total = rv.sum()
        k = len(rv)
        best = -np.inf
        for a in range(k):
            s_in = 0.0
            for b in range(a + 1, k + 1):
                s_in += rv[b - 1]
                n_in = b - a
                n_out = k - n_in
                if n_out == 0:
                    continue
                mean_in = s_in / n_in
                mean_out = (total - s_in) / n_out
                z = (mean_out - mean_in) / sigma * np.sqrt(n_in * n_out / k)
                if z > best:
                    best = z
                    out[m, 0] = z
                    out[m, 1] = 1.0 - mean_in / mean_out if mean_out > 0.0 else np.nan
                    out[m, 3] = a
                    out[m, 4] = b
        # segment bounds are in blocks of the compacted series: map back to block numbers
        idx = np.flatnonzero(~np.isnan(r))
        out[m, 3] = idx[int(out[m, 3])]
        out[m, 4] = idx[int(out[m, 4]) - 1] + 1


def change_point(e: np.ndarray, peer: np.ndarray, *, block: int = 24) -> np.ndarray:
    """float64 (N, 5): z, drop fraction, level L, first block, end block (exclusive; -1 = none).
    `e`, `peer` float64 (N, T); blocks with under half their values present are skipped."""
    n, n_t = checks.array("e", e, np.float64, 2).shape
    checks.array("peer", peer, np.float64, 2, (n, n_t))
    checks.positive("block", block)
    out = np.empty((n, 5))
    _change_point(e, peer, int(block), out)
    return out


@kernel
def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    n = 0
    sa = 0.0
    sb = 0.0
    for t in range(len(a)):
        if np.isfinite(a[t]) and np.isfinite(b[t]):
            n += 1
            sa += a[t]
            sb += b[t]
    if n < 3:
        return np.nan
    ma = sa / n
    mb = sb / n
    cab = 0.0
    caa = 0.0
    cbb = 0.0
    for t in range(len(a)):
        if np.isfinite(a[t]) and np.isfinite(b[t]):
            cab += (a[t] - ma) * (b[t] - mb)
            caa += (a[t] - ma) ** 2
            cbb += (b[t] - mb) ** 2
    if caa <= 1e-12 * n or cbb <= 1e-12 * n:
        return 0.0  # a constant series carries no shape: correlation 0 by convention
    # a[t] of an ndarray of unknown dtype is Any to numpy's stubs, and so is cab
    return cab / np.sqrt(caa * cbb)  # type: ignore[no-any-return]


@kernel
def _peer_deviation(e: np.ndarray, peer: np.ndarray, day: int, out: np.ndarray) -> None:
    n, n_t = e.shape
    for m in range(n):
        out[m, 0] = np.nan
        out[m, 1] = -1.0
        for d in range(n_t // day):
            seg = e[m, d * day : (d + 1) * day]
            if np.sum(~np.isnan(seg)) * 2 < day:
                continue  # under half the day present: too little to judge a shape
            dev = 1.0 - _pearson(seg, peer[m, d * day : (d + 1) * day])
            if np.isnan(out[m, 0]) or dev > out[m, 0]:
                out[m, 0] = dev
                out[m, 1] = d


def peer_deviation(e: np.ndarray, peer: np.ndarray, *, day: int = 96) -> np.ndarray:
    """float64 (N, 2): the largest daily (1 - corr(e, peer)) in [0, 2], and its day index."""
    n, n_t = checks.array("e", e, np.float64, 2).shape
    checks.array("peer", peer, np.float64, 2, (n, n_t))
    checks.positive("day", day)
    out = np.empty((n, 2))
    _peer_deviation(e, peer, int(day), out)
    return out


@kernel
def _localisation(shortfall: np.ndarray, ntl: np.ndarray, tx_of: np.ndarray, out: np.ndarray) -> None:
    for m in range(shortfall.shape[0]):
        out[m] = _pearson(shortfall[m], ntl[tx_of[m]])


def localisation(shortfall: np.ndarray, ntl: np.ndarray, tx_of: np.ndarray) -> np.ndarray:
    """float64 (N,): corr over time of each meter's shortfall (N, T) with its transformer's NTL
    series (X, T); NaN with fewer than 3 common intervals."""
    n, n_t = checks.array("shortfall", shortfall, np.float64, 2).shape
    checks.array("ntl", ntl, np.float64, 2, (None, n_t))
    checks.array("tx_of", tx_of, np.int64, 1, (n,))
    checks.index_range("tx_of", tx_of, ntl.shape[0])
    out = np.empty(n)
    _localisation(shortfall, ntl, tx_of, out)
    return out


def peer_profiles(
    e: np.ndarray, cls: np.ndarray, tx_of: np.ndarray, exclude: np.ndarray, *, min_peers: int = 8
) -> np.ndarray:
    """(N, T) peer profile per meter: mean of its peers' series scaled to mean 1. Peers are the
    same class on the same transformer, or the whole class below `min_peers` such meters.
    Meters in `exclude` (bool (N,): PV customers, whose net dips to zero or below by day) and
    meters with a non-positive mean are left out of every profile, but still get one."""
    n, n_t = checks.array("e", e, np.float64, 2).shape
    checks.array("cls", cls, np.int64, 1, (n,))
    checks.array("tx_of", tx_of, np.int64, 1, (n,))
    checks.array("exclude", exclude, np.bool_, 1, (n,))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(np.where(np.isnan(e), np.nan, e), axis=1) if n_t else np.zeros(n)
    usable = np.isfinite(mean) & (mean > 0) & ~exclude
    norm = np.where(usable[:, None], e / np.where(usable, mean, 1.0)[:, None], np.nan)
    norm = np.where(np.isnan(norm), np.nan, norm)  # rows out of the profile stay NaN
    n_tx = int(tx_of.max()) + 1 if n else 0
    local_key = cls * n_tx + tx_of
    out = np.empty((n, n_t))
    for key, groups in (
        (cls, int(cls.max()) + 1 if n else 0),
        (local_key, int(local_key.max()) + 1 if n else 0),
    ):
        sums, counts = group_sum_rows(np.ascontiguousarray(norm), key, groups)
        members = np.bincount(key[usable], minlength=groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            prof = sums / counts
        take = members[key] >= min_peers if key is local_key else np.ones(n, bool)
        out[take] = prof[key[take]]
    return out


def warm_up() -> None:
    e = np.ones((1, 8))
    change_point(e, e, block=2)
    peer_deviation(e, e, day=4)
    localisation(e, e, np.zeros(1, np.int64))
