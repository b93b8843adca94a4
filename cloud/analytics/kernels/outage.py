"""Outages: the meters of a transformer losing voltage or falling silent together.

A meter is dead at an instant when it was asked and did not answer (a COMMS_LOST row: `polled`
but not `present`) or its highest phase voltage is below `dead_fraction` x nominal. A slot
with no row at all (an agent that was late, the edge of the window, a gap in an import) is
unknown, not dead: missing data is not evidence of a missing supply. A transformer is out at an
instant when at least `min_share` of its meters (and at least `min_meters`) are dead: one
silent meter is a comms fault, all of them together is the supply. Consecutive out instants
make an event [start, end) in instants.
A feeder is out when at least two of its transformers, and at least `feeder_share` of them, are
out at the same instant; transformer events inside a feeder event are reported as the feeder's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloud.analytics.kernels import checks
from cloud.analytics.kernels.config import kernel


@kernel
def _group_out(
    dead: np.ndarray, group: np.ndarray, n_groups: int, min_share: float, min_meters: int, out: np.ndarray
) -> None:
    n, k = dead.shape
    members = np.zeros(n_groups, np.int64)
    for m in range(n):
        members[group[m]] += 1
    count = np.zeros((n_groups, k), np.int64)
    for m in range(n):
        for t in range(k):
            if dead[m, t]:
                count[group[m], t] += 1
    for g in range(n_groups):
        for t in range(k):
            c = count[g, t]
            out[g, t] = members[g] > 0 and c >= min_meters and c >= min_share * members[g]


@kernel
def _runs(mask: np.ndarray, out: np.ndarray) -> int:
    n = 0
    for g in range(mask.shape[0]):
        t = 0
        while t < mask.shape[1]:
            if mask[g, t]:
                s = t
                while t < mask.shape[1] and mask[g, t]:
                    t += 1
                out[n, 0] = g
                out[n, 1] = s
                out[n, 2] = t
                n += 1
            else:
                t += 1
    return n


def runs(mask: np.ndarray) -> np.ndarray:
    """int64 (E, 3): (row, start, end exclusive) for each run of True in a bool (G, K) mask."""
    checks.array("mask", mask, np.bool_, 2)
    out = np.empty((mask.size // 2 + mask.shape[0] + 1, 3), np.int64)
    return out[: _runs(mask, out)].copy()


@dataclass(frozen=True)
class Outages:
    tx_out: np.ndarray  # bool (X, K)
    feeder_out: np.ndarray  # bool (F, K)
    events: list[tuple[str, int, int, int]]  # ("transformer" | "feeder", index, start, end)


def outages(
    present: np.ndarray,
    vmax: np.ndarray,
    tx_of: np.ndarray,
    feeder_of_tx: np.ndarray,
    n_feeders: int,
    *,
    v_nominal: float = 230.0,
    dead_fraction: float = 0.5,
    min_share: float = 0.8,
    min_meters: int = 2,
    feeder_share: float = 0.5,
    polled: np.ndarray | None = None,
) -> Outages:
    """`present` bool (N, K), `vmax` float64 (N, K) highest phase voltage, `tx_of` int64 (N,),
    `feeder_of_tx` int64 (X,); `polled` bool (N, K), None = every meter was asked everywhere."""
    n, k = checks.array("present", present, np.bool_, 2).shape
    checks.array("vmax", vmax, np.float64, 2, (n, k))
    asked = np.ones((n, k), np.bool_) if polled is None else checks.array(
        "polled", polled, np.bool_, 2, (n, k))
    checks.array("tx_of", tx_of, np.int64, 1, (n,))
    n_tx = len(checks.array("feeder_of_tx", feeder_of_tx, np.int64, 1))
    checks.index_range("tx_of", tx_of, n_tx)
    checks.index_range("feeder_of_tx", feeder_of_tx, n_feeders)
    with np.errstate(invalid="ignore"):
        dead = (asked & ~present) | (present & ~(vmax >= dead_fraction * v_nominal))
    tx_out = np.empty((n_tx, k), np.bool_)
    _group_out(dead, tx_of, n_tx, float(min_share), int(min_meters), tx_out)
    feeder_out = np.empty((n_feeders, k), np.bool_)
    _group_out(tx_out, feeder_of_tx, n_feeders, float(feeder_share), 2, feeder_out)
    events = [("feeder", int(g), int(s), int(e)) for g, s, e in runs(feeder_out)]
    covered = feeder_out[feeder_of_tx]  # (X, K): this transformer's feeder is out
    events += [("transformer", int(g), int(s), int(e)) for g, s, e in runs(tx_out & ~covered)]
    return Outages(tx_out, feeder_out, events)


def warm_up() -> None:
    outages(
        np.ones((2, 2), np.bool_), np.full((2, 2), 230.0), np.zeros(2, np.int64), np.zeros(1, np.int64), 1
    )
