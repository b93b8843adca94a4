"""The balance meter as a check meter: what a transformer's balance meter says an estimated
customer interval should have been, stored beside the estimate (`vee_intervals.check_kwh`).

For one transformer over the period, with b[t] the balance meter's interval energy and x[i, t]
its customers' raw interval energy (NaN = missing):

    residual[t] = b[t] - Σ_i x[i, t]            over the customers measured at t
    f           = median over fully measured t of (b[t] - Σ_i x[i, t]) / b[t]
                  (the transformer's loss share, technical and non-technical, on its own data)
    check[i, t] = residual[t] - f · b[t]        where customer i is the only one missing at t

A check needs the balance reading at t, every other customer measured at t, and at least
`min_full` fully measured intervals to find f; elsewhere it is missing (NaN), never guessed.
Where two customers are missing at once the residual is their sum and cannot be split: no check.
A large |estimate - check| is evidence for a person: the estimate is wrong, or the loss (theft)
changed while the customer's data was missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from cloud.mdm.calendar import Period
from cloud.mdm.fetch import fetch_intervals
from cloud.store import mdm_sql

F64 = npt.NDArray[np.float64]


def check_values(balance: F64, customers: F64, min_full: int = 96) -> tuple[F64, float]:
    """(check (n, N) for each customer-interval that is the only one missing, NaN elsewhere;
    the loss share f). `balance` (N,), `customers` (n, N) raw, NaN = missing."""
    n, t = customers.shape
    out = np.full((n, t), np.nan)
    missing = np.isnan(customers)
    measured_sum = np.where(missing, 0.0, customers).sum(axis=0)
    full = ~missing.any(axis=0) & ~np.isnan(balance) & (balance > 0)
    if int(full.sum()) < min_full:
        return out, float("nan")
    f = float(np.median((balance[full] - measured_sum[full]) / balance[full]))
    one = (missing.sum(axis=0) == 1) & ~np.isnan(balance)
    residual = balance - measured_sum - f * balance
    rows = np.argmax(missing, axis=0)  # the missing customer where exactly one is
    cols = np.nonzero(one)[0]
    out[rows[cols], cols] = residual[cols]
    return out, f


def check_run(conn: psycopg.Connection[Any], run_id: int, periods: dict[str, Period],
              step_s: int, default_zone: str | None = None) -> dict[str, Any]:
    """Fill `check_kwh` of run `run_id`'s estimates on every transformer with a balance meter;
    returns a summary for the run (intervals checked, median |estimate - check|)."""
    checked, diffs, skipped = 0, [], 0
    for _tx, balance_id, tz, meters in conn.execute(mdm_sql.BALANCED_TRANSFORMERS).fetchall():
        tz = tz or default_zone
        period = periods.get(tz) if tz else None
        if period is None or tz is None:
            continue  # the transformer's customers were not in this run
        est = conn.execute(mdm_sql.ESTIMATES_OF_RUN, {"run": run_id, "m": meters}).fetchall()
        if not est:
            continue
        iv = fetch_intervals(conn, [balance_id, *meters], period.start, period.end, step_s, tz)
        x = iv.series.import_kwh
        check, f = check_values(x[0], x[1:], min_full=max(1, 86_400 // step_s))
        if np.isnan(f):
            skipped += 1
            continue
        pos = {m: i for i, m in enumerate(meters)}
        t0 = int(iv.series.ts_s[0])
        updates = []
        for mid, bucket, value in est:
            j = (int(bucket.timestamp()) - t0) // step_s
            c = check[pos[mid], j] if 0 <= j < check.shape[1] else np.nan
            if np.isfinite(c):
                updates.append({"run": run_id, "m": mid, "bucket": bucket, "check": float(c)})
                if value is not None:
                    diffs.append(abs(float(value) - float(c)))
        if updates:
            with conn.cursor() as cur:
                cur.executemany(mdm_sql.SET_CHECK, updates)
            checked += len(updates)
    return {"intervals_checked": checked,
            "median_abs_diff_kwh": float(np.median(diffs)) if diffs else None,
            "transformers_without_enough_data": skipped}
