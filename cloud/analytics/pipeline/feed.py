"""The arrays the analytics run on: readings of every meter at K regular instants, plus topology.

This is the seam between storage and kernels: the database layer (a later task) fills it from
`readings` with one query per role; `simfeed.sample` fills it from an in-memory simulation.
Rows are meters, columns instants t0 + k * step_s (k = 0..K-1); intervals are the K - 1 spans
between instants. NaN = not read; `present` says the meter answered at all; `polled` says the
meter was asked at all (a stored row at the instant, a COMMS_LOST one included). A slot that is
neither is unknown: no poll reached the store (an agent that was late, a window's edge, a gap in
an import), which is not evidence that the meter or its supply failed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocols.reading import REGISTERS, SCALARS

# The measured fields a MeterArrays holds one (M, K) array of, named as in `readings`: the
# registers and the per-meter scalars the loss and theft analytics use (the power factor and
# frequency are not among them); the phase values are the (M, K, 3) arrays `v` and `i`.
PER_METER: tuple[str, ...] = (*REGISTERS, *(f for f in SCALARS if f not in ("pf", "freq_hz")))


@dataclass
class MeterArrays:
    import_wh: np.ndarray  # (M, K) cumulative registers
    export_wh: np.ndarray
    import_varh: np.ndarray
    export_varh: np.ndarray
    v: np.ndarray  # (M, K, 3) volts; a single-phase meter uses column 0, NaN elsewhere
    i: np.ndarray  # (M, K, 3) amperes
    i_n: np.ndarray  # (M, K)
    p_w: np.ndarray  # (M, K) reported active power
    q_var: np.ndarray  # (M, K)
    status: np.ndarray  # (M, K) int64 MeterStatus bits
    present: np.ndarray  # (M, K) bool
    modulus_wh: np.ndarray  # (M,) register wrap value, 0 = none (from the meter model's register width)
    polled: np.ndarray  # (M, K) bool: a row of any quality exists at the instant (present implies it)
    # (M, K) int64: seconds the reading was taken after (+) or before (-) its instant, |.| < step / 2;
    # registers are interpolated from when they were read, not from when they should have been
    offset_s: np.ndarray


@dataclass
class Topology:
    meter_ids: list[str]  # customers, aligned with the customer arrays
    transformer_ids: list[str]
    feeder_ids: list[str]
    region_ids: list[str]
    tx_of: np.ndarray  # (N,) int64
    feeder_of_tx: np.ndarray  # (X,) int64
    region_of_feeder: np.ndarray  # (F,) int64
    cls: np.ndarray  # (N,) int64 customer class index
    phases: np.ndarray  # (N,) int64
    has_pv: np.ndarray  # (N,) bool
    tariff_per_kwh: np.ndarray  # (N,)
    rating_va: np.ndarray  # (X,)
    no_load_w: np.ndarray  # (X,)
    load_loss_w: np.ndarray  # (X,) at rated apparent power


@dataclass
class Feed:
    t0_s: int
    step_s: int
    customers: MeterArrays
    balance: MeterArrays  # one per transformer, aligned with topology.transformer_ids
    feeders: MeterArrays  # one per feeder head
    topology: Topology

    @property
    def n_instants(self) -> int:
        return int(self.customers.present.shape[1])


def empty_arrays(m: int, k: int) -> MeterArrays:
    nan2 = np.full((m, k), np.nan)
    return MeterArrays(
        nan2.copy(),
        nan2.copy(),
        nan2.copy(),
        nan2.copy(),
        np.full((m, k, 3), np.nan),
        np.full((m, k, 3), np.nan),
        nan2.copy(),
        nan2.copy(),
        nan2.copy(),
        np.zeros((m, k), np.int64),
        np.zeros((m, k), np.bool_),
        np.zeros(m),
        np.zeros((m, k), np.bool_),
        np.zeros((m, k), np.int64),
    )
