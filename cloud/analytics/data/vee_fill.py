"""The analytics read the post-VEE layer: a customer register the readings do not have is
filled from the newest VEE run covering the period (and any manual edit), so the energy
balance and the theft indicators run on validated and estimated data, and every interval that
rests on such an estimate is marked ESTIMATED in the report (`stages.run(vee_filled=...)`).

Only the Feed in memory is filled: no reading is written, and `present` stays what the meters
answered (the outage and comms indicators still see the silence). A register is filled
forward from the last known one by the estimated interval energies, so where VEE estimated
from the registers around a gap (its linear and scaled methods) the interval after the gap
closes on the next real reading exactly. VEE estimates import energy only: the export register
there is interpolated between the real readings around the stretch.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from cloud.analytics.pipeline.feed import Feed
from cloud.store import post_vee_sql


def fill_from_vee(conn: psycopg.Connection[Any], feed: Feed) -> tuple[np.ndarray | None, str | None]:
    """(mask (M, K) of customer instants filled, a note), or (None, None) when no VEE run covers
    the period (the analytics then run on the raw readings alone, as before)."""
    c = feed.customers
    m, k = c.import_wh.shape
    if m == 0 or k < 2:
        return None, None
    step = feed.step_s
    lo = datetime.fromtimestamp(feed.t0_s, UTC)
    hi = datetime.fromtimestamp(feed.t0_s + (k - 1) * step, UTC)
    run = conn.execute(post_vee_sql.VEE_RUN_COVERING, {"step": step, "lo": lo, "hi": hi}).fetchone()
    if run is None:
        return None, None
    pos = {mid: i for i, mid in enumerate(feed.topology.meter_ids)}
    energy = np.full((m, k - 1), np.nan)
    for mid, bucket, value in conn.execute(post_vee_sql.ESTIMATES, {
            "m": feed.topology.meter_ids, "lo": lo, "hi": hi, "run": run[0]}):
        j = (int(bucket.timestamp()) - feed.t0_s) // step
        if value is not None and 0 <= j < k - 1:
            energy[pos[mid], j] = value * 1000.0
    reg = c.import_wh
    filled = np.zeros((m, k), dtype=np.bool_)
    rows = np.nonzero(~np.isnan(energy).all(axis=1))[0]
    for kk in range(1, k):
        r = rows[np.isnan(reg[rows, kk]) & ~np.isnan(reg[rows, kk - 1])
                 & ~np.isnan(energy[rows, kk - 1])]
        reg[r, kk] = reg[r, kk - 1] + energy[r, kk - 1]
        filled[r, kk] = True
    # VEE estimates import only; the export register over a filled stretch is interpolated
    # between the real readings around it (0 for a meter that never exports), so the net energy
    # exists there too; both are marked estimated with the interval
    for r in np.nonzero(filled.any(axis=1))[0]:
        ex = c.export_wh[r]
        known = np.nonzero(~np.isnan(ex))[0]
        gaps = np.nonzero(filled[r] & np.isnan(ex))[0]
        if known.size >= 2 and gaps.size:
            inside = gaps[(gaps > known[0]) & (gaps < known[-1])]
            ex[inside] = np.interp(inside, known, ex[known])
    n = int(filled.sum())
    note = (f"{n:,} customer readings missing from the store were filled from VEE run "
            f"{run[0]}'s estimates; intervals resting on them are marked estimated")
    return filled, note if n else None
