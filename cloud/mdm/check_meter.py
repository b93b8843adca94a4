"""The balance meter as a check meter: what a transformer's balance meter says an estimated
customer interval should have been, stored beside the estimate (`vee_intervals.check_kwh`).

For one transformer over the period, with b[t] the balance meter's interval energy and x[i, t]
its customers' raw interval energy (NaN = missing):

    residual[t] = b[t] - Σ_i x[i, t]            over the customers measured at t
    f           = median over fully measured t of (b[t] - Σ_i x[i, t]) / b[t]
                  (the transformer's loss share, technical and non-technical, on its own data)
    check[i, t] = residual[t] - f · b[t]        where customer i is the only one missing at t

A check needs the balance reading at t, every other customer measured at t, and at least
`min_full` fully measured intervals (a day) to find f; elsewhere it is missing (NaN), never
guessed. `run_vee` computes it on each chunk while it is in memory (chunks hold whole
transformers) and writes it with the estimates (`vee_intervals.check_kwh`).
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
from cloud.mdm.fetch import Intervals, fetch_intervals

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


def chunk_checks(conn: psycopg.Connection[Any], iv: Intervals, meter_ids: list[str],
                 transformer_ids: list[str], balance_of: dict[str, str], period: Period,
                 zone_name: str, estimated: npt.NDArray[np.bool_]) -> tuple[F64, int]:
    """(check (M, N), NaN where none, for the chunk's estimated intervals; transformers
    without enough data to find their loss share). The chunk holds whole transformers
    (`run_vee` cuts it so), so only their balance meters are read: no second pass."""
    m, n = iv.series.shape
    out = np.full((m, n), np.nan)
    txs = sorted({t for t in transformer_ids if t in balance_of})
    if not txs or not estimated.any():
        return out, 0
    bal = fetch_intervals(conn, [balance_of[t] for t in txs], period.start, period.end,
                          iv.series.step_s, zone_name).series.import_kwh
    raw = iv.series.import_kwh
    short = 0
    tx_arr = np.asarray(transformer_ids, dtype=object)
    for k, tx in enumerate(txs):
        rows = np.nonzero(tx_arr == tx)[0]
        if not estimated[rows].any():
            continue
        check, f = check_values(bal[k], raw[rows], min_full=max(1, 86_400 // iv.series.step_s))
        if np.isnan(f):
            short += 1
            continue
        out[rows] = np.where(estimated[rows], check, np.nan)
    return out, short
