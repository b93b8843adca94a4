"""Billing determinants: what a bill is computed from, per customer and billing period.

For M customers on one tariff and N intervals of the period (interval starts `ts_s`, UTC, step
`step_s`; the caller picks the rows of one tariff version and one local period):

    kwh[p]        = Σ_t import_kWh[t] · [period(t) = p]            energy per time-of-use period
    total_kwh     = Σ_p kwh[p]
    export_kwh    = Σ_t export_kWh[t]
    kvarh         = Σ_t import_kvarh[t]                            (NaN: the export has none)
    max_kw        = max_t import_kWh[t] / (step_s / 3600 h)        and its interval's start
    estimated     = Σ_t import_kWh[t] · estimated[t] / total_kwh    share of energy estimated
    amount        = Σ_p kwh[p] · price[p] + max_kw · demand_charge + kvarh · reactive_price
                    − export_kwh · export_price

Demand is the mean power of one interval: the 15-minute demand billing uses when the data is
15-minute; with 30- or 60-minute data it is the 30- or 60-minute demand (lower than the
15-minute peak would be), and `demand_window_s` says which.

Missing is missing: an interval without a value (NaN, not estimated) makes the customer's
determinants `complete = False`; their sums cover only what exists and `amount` is NaN, because
a bill on missing intervals would understate the energy. VEE estimates the gaps first (and
marks them), and the estimated share says how much of the bill rests on estimates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cloud.mdm.calendar import LocalParts
from cloud.mdm.tariffs import Tariff

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Determinants:
    period_names: list[str]
    kwh: F64  # (M, P) energy per time-of-use period
    total_kwh: F64  # (M,)
    export_kwh: F64
    kvarh: F64
    max_kw: F64
    max_kw_at_s: npt.NDArray[np.int64]  # interval start of the maximum (UTC s); -1: no data
    estimated_share: F64  # 0..1 of total_kwh; NaN when total is 0
    intervals: int  # intervals in the period
    missing: npt.NDArray[np.int64]  # (M,) intervals with no import value
    demand_window_s: int
    amount: F64  # (M,) in the tariff's currency; NaN when incomplete

    @property
    def complete(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.missing == 0, dtype=np.bool_)


def compute(ts_s: npt.NDArray[np.int64], step_s: int, parts: LocalParts, tariff: Tariff,
            import_kwh: F64, export_kwh: F64 | None = None, kvarh: F64 | None = None,
            estimated: npt.NDArray[np.bool_] | None = None) -> Determinants:
    """Determinants of M customers (rows) over N intervals (columns), all on `tariff`."""
    imp = np.atleast_2d(np.asarray(import_kwh, dtype=np.float64))
    m, n = imp.shape
    if ts_s.shape != (n,):
        raise ValueError(f"ts_s has shape {ts_s.shape}; the readings have {n} intervals")
    names = tariff.period_names
    period = tariff.classify(parts)
    onehot = np.zeros((n, len(names)), dtype=np.float64)
    onehot[np.arange(n), period] = 1.0
    present = ~np.isnan(imp)
    filled = np.where(present, imp, 0.0)
    kwh = filled @ onehot
    total = kwh.sum(axis=1)
    exp = (np.zeros(m) if export_kwh is None
           else np.nansum(np.atleast_2d(export_kwh), axis=1))
    var = (np.full(m, np.nan) if kvarh is None else _nan_sum(np.atleast_2d(kvarh)))
    hours = step_s / 3600.0
    any_data = present.any(axis=1)
    arg = np.argmax(np.where(present, imp, -np.inf), axis=1)
    max_kw = np.where(any_data, filled[np.arange(m), arg] / hours, np.nan)
    max_at = np.where(any_data, ts_s[arg], -1).astype(np.int64)
    if estimated is None:
        est_share = np.where(total > 0, 0.0, np.nan)
    else:
        est = np.atleast_2d(estimated) & present
        with np.errstate(invalid="ignore", divide="ignore"):
            est_share = np.where(total > 0, (filled * est).sum(axis=1) / total, np.nan)
    missing = (~present).sum(axis=1).astype(np.int64)
    return Determinants(names, kwh, total, exp, var, max_kw, max_at, est_share, n, missing,
                        step_s, _amount(tariff, kwh, max_kw, var, exp, missing))


def _amount(tariff: Tariff, kwh: F64, max_kw: F64, kvarh: F64, export_kwh: F64,
            missing: npt.NDArray[np.int64]) -> F64:
    amount = kwh @ tariff.prices() + np.nan_to_num(max_kw) * tariff.demand_charge_per_kw
    if tariff.reactive_price_per_kvarh:
        amount = amount + np.nan_to_num(kvarh) * tariff.reactive_price_per_kvarh
    if tariff.export_price_per_kwh:
        amount = amount - export_kwh * tariff.export_price_per_kwh
    return np.where(missing == 0, amount, np.nan)


def _nan_sum(a: F64) -> F64:
    """Row sums where a row has any value; NaN for a row with none (no kvarh register)."""
    has = ~np.isnan(a)
    return np.where(has.any(axis=1), np.where(has, a, 0.0).sum(axis=1), np.nan)


def combine(parts: list[Determinants], tariff: Tariff) -> Determinants:
    """The determinants of a period from those of its consecutive pieces (its days) on one
    tariff: sums add, the maximum demand is the largest, and the amount is computed again (the
    demand charge applies once, to the period's maximum, not to each day's)."""
    if not parts:
        raise ValueError("nothing to combine")
    first = parts[0]
    if any(p.period_names != first.period_names for p in parts):
        raise ValueError("pieces on different tariffs: combine their amounts, not their TOU kWh")
    kwh = sum((p.kwh for p in parts), np.zeros_like(first.kwh))
    total = sum((p.total_kwh for p in parts), np.zeros_like(first.total_kwh))
    stack_kw = np.stack([p.max_kw for p in parts])
    has = ~np.isnan(stack_kw)
    best = np.argmax(np.where(has, stack_kw, -np.inf), axis=0)
    cols = np.arange(stack_kw.shape[1])
    max_kw = np.where(has.any(axis=0), stack_kw[best, cols], np.nan)
    max_at = np.where(has.any(axis=0), np.stack([p.max_kw_at_s for p in parts])[best, cols], -1)
    est_kwh = sum((np.nan_to_num(p.estimated_share) * p.total_kwh for p in parts),
                  np.zeros_like(total))
    with np.errstate(invalid="ignore", divide="ignore"):
        est_share = np.where(total > 0, est_kwh / total, np.nan)
    kv = np.stack([p.kvarh for p in parts])
    kvarh = np.where((~np.isnan(kv)).any(axis=0), np.nansum(kv, axis=0), np.nan)
    export = sum((p.export_kwh for p in parts), np.zeros_like(total))
    missing = sum((p.missing for p in parts), np.zeros_like(first.missing))
    return Determinants(first.period_names, kwh, total, export, kvarh, max_kw,
                        max_at.astype(np.int64), est_share, sum(p.intervals for p in parts),
                        missing, first.demand_window_s,
                        _amount(tariff, kwh, max_kw, kvarh, export, missing))
