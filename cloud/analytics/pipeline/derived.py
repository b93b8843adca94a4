"""What the results tables show beyond the transformer balance, computed with the rest of the
run (`pipeline.run`) so that a `Report` is complete and its writers only reshape it:
- the NTL sigma of each interval on its own, with the pipeline's error model;
- the region balance: regions' input is the sum of their feeder heads (NaN in an interval
  unless every head read), their output their customers' net energy;
- each region's mean daily profile and a next-day Holt-Winters forecast (none with under two
  days, or where the first day has no value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloud.analytics.kernels import balance as kb
from cloud.analytics.kernels import forecast as kf
from cloud.analytics.kernels import loss as kl
from cloud.analytics.kernels.checks import KernelInputError
from cloud.analytics.pipeline.feed import Topology

MIN_COMPLETENESS = 0.95  # kernels.balance.energy_balance's default, recorded with each run


@dataclass(frozen=True)
class Derived:
    ntl_sigma_series_wh: np.ndarray  # (X, T) per transformer and interval, NaN where no loss
    region_balance: kb.Balance
    region_profile_wh: np.ndarray | None  # (R, day), None without regions
    region_forecast_wh: list[np.ndarray | None]  # per region: the next day, or None


def derive(topo: Topology, net_wh: np.ndarray, bal: kb.Balance, technical_wh: np.ndarray,
           feeder_balance: kb.Balance, region_wh: np.ndarray, day: int) -> Derived:
    n_tx, n_rg = len(topo.transformer_ids), len(topo.region_ids)
    cust_sq, _ = kb.group_sum_rows(np.ascontiguousarray(np.nan_to_num(net_wh) ** 2), topo.tx_of, n_tx)
    _, sigma_i = kl.ntl_with_uncertainty(*(np.ascontiguousarray(a.ravel()) for a in (
        bal.loss_wh, technical_wh, bal.input_wh, cust_sq)))
    sigma_i = np.where(np.isnan(bal.loss_wh), np.nan, sigma_i.reshape(bal.loss_wh.shape))

    region_of_tx = np.ascontiguousarray(topo.region_of_feeder[topo.feeder_of_tx])
    s, c = kb.group_sum_rows(np.ascontiguousarray(feeder_balance.input_wh), topo.region_of_feeder, n_rg)
    heads = np.bincount(topo.region_of_feeder, minlength=n_rg)[:, None]
    r_in = np.where((c == heads) & (heads > 0), s, np.nan)
    region_of_meter = np.ascontiguousarray(region_of_tx[topo.tx_of])
    r_bal = kb.energy_balance(r_in, net_wh, region_of_meter, min_completeness=MIN_COMPLETENESS)

    prof = kf.profile(np.ascontiguousarray(region_wh), day) if region_wh.size else None
    forecasts: list[np.ndarray | None] = []
    for y in region_wh:
        fc = None
        if len(y) >= 2 * day:
            try:
                fc = kf.holt_winters(np.ascontiguousarray(y), day, day)
            except KernelInputError:  # first day all NaN: no forecast rather than a wrong one
                fc = None
        forecasts.append(fc)
    return Derived(sigma_i, r_bal, prof, forecasts)
