"""Energy balance per group (transformer, feeder or region) and interval.

Definitions, per group g and interval t (all energies in Wh, net = import - export):
    downstream[g, t] = sum of net energy of the group's customer meters present at t
    loss[g, t]       = input[g, t] - downstream[g, t]    (input: balance or feeder-head meter)
    loss_pct[g, t]   = 100 * loss / input                (NaN when input <= 0)
    completeness     = (customer values present + input present) / (customers + 1)
    low_confidence   = completeness < min_completeness
A missing customer value makes the loss look larger than it is; that is why every loss figure
carries its completeness, and why the whole-period totals come with it too.

The grouped sum is the hot loop (the benchmark's subject): one pass over the values, adding
into per-group accumulators, NaN skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloud.analytics.kernels import checks
from cloud.analytics.kernels.config import kernel


@kernel
def _group_sum_keys(values: np.ndarray, keys: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> None:
    for i in range(len(values)):
        v = values[i]
        if not np.isnan(v):
            k = keys[i]
            sums[k] += v
            counts[k] += 1


@kernel
def _group_sum_rows(values: np.ndarray, group: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> None:
    n_t = values.shape[1]
    for m in range(values.shape[0]):
        g = group[m]
        for t in range(n_t):
            v = values[m, t]
            if not np.isnan(v):
                sums[g, t] += v
                counts[g, t] += 1


def group_sum(values: np.ndarray, keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the non-NaN `values` (float64 (N,)) per key (int64 (N,) in [0, n_keys))."""
    n = len(checks.array("values", values, np.float64, 1))
    checks.array("keys", keys, np.int64, 1, (n,))
    checks.index_range("keys", keys, n_keys)
    sums = np.zeros(n_keys)
    counts = np.zeros(n_keys, np.int64)
    _group_sum_keys(values, keys, sums, counts)
    return sums, counts


def group_sum_rows(values: np.ndarray, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `values` (float64 (M, T)) summed per group (int64 (M,)): sums (G, T), counts (G, T)."""
    m = checks.array("values", values, np.float64, 2).shape[0]
    checks.array("group", group, np.int64, 1, (m,))
    checks.index_range("group", group, n_groups)
    sums = np.zeros((n_groups, values.shape[1]))
    counts = np.zeros((n_groups, values.shape[1]), np.int64)
    _group_sum_rows(values, group, sums, counts)
    return sums, counts


@dataclass(frozen=True)
class Balance:
    """Per group and interval (G, T), plus whole-period totals (G,)."""

    input_wh: np.ndarray
    downstream_wh: np.ndarray
    loss_wh: np.ndarray
    loss_pct: np.ndarray
    completeness: np.ndarray
    low_confidence: np.ndarray
    period_loss_wh: np.ndarray
    period_loss_pct: np.ndarray
    period_completeness: np.ndarray


def energy_balance(
    input_wh: np.ndarray, customer_net_wh: np.ndarray, group_of: np.ndarray, *, min_completeness: float = 0.95
) -> Balance:
    """`input_wh` float64 (G, T), NaN = missing; `customer_net_wh` float64 (M, T); `group_of`
    int64 (M,). Period totals use only intervals whose input is present."""
    g, t = checks.array("input_wh", input_wh, np.float64, 2).shape
    checks.array("customer_net_wh", customer_net_wh, np.float64, 2, (None, t))
    down, present = group_sum_rows(customer_net_wh, group_of, g)
    expected = np.bincount(group_of, minlength=g).astype(np.float64)[:, None]
    has_input = ~np.isnan(input_wh)
    loss = input_wh - down
    with np.errstate(divide="ignore", invalid="ignore"):
        loss_pct = np.where(input_wh > 0, 100.0 * loss / input_wh, np.nan)
        completeness = (present + has_input) / (expected + 1.0)
    p_in = np.where(has_input, input_wh, 0.0).sum(1)
    p_loss = np.where(has_input, loss, 0.0).sum(1)
    p_present = present.sum(1) + has_input.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_pct = np.where(p_in > 0, 100.0 * p_loss / p_in, np.nan)
        p_comp = p_present / ((expected[:, 0] + 1.0) * max(t, 1))
    return Balance(
        input_wh, down, loss, loss_pct, completeness, completeness < min_completeness, p_loss, p_pct, p_comp
    )


def warm_up() -> None:
    group_sum(np.zeros(2), np.zeros(2, np.int64), 1)
    energy_balance(np.ones((1, 2)), np.zeros((2, 2)), np.zeros(2, np.int64))
