"""Fault injection: what goes wrong between a meter and its poller, per meter, reproducibly.

Each meter may carry a `MeterFaults` profile. Per request, `FaultPlan.decide` draws from a
counter-based hash of (seed, meter, request number), so a run with the same seed and the same
request sequence fails in the same places. The transport layer (modbus_server.py) acts on the
decision; the register content is altered here (`apply_reading`): clock drift moves the
meter's own time stamp, rollover wraps the energy registers the way a fixed-width counter does.
Meter data faults (stuck registers, spikes, missing days, agent clock steps) come from an
optional `DataFaultPlan` (data_faults.py) in `data`; None, the default, changes nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from firmware_sim.data_faults import DataFaultPlan
from firmware_sim.profiles import hash_uniform
from protocols.reading import MeterStatus, Reading

CLOCK_INVALID_AFTER_S = 300.0  # a meter flags its clock once it is off by more than this


class Action(enum.Enum):
    REPLY = "reply"
    SLOW = "slow"  # reply after `slow_s`
    TIMEOUT = "timeout"  # never reply
    EXCEPTION = "exception"  # Modbus exception response with `exception_code`
    CORRUPT = "corrupt"  # reply with a damaged frame (bad CRC on RTU, bad length on TCP)
    DROP = "drop"  # close the TCP connection


@dataclass(frozen=True)
class MeterFaults:
    """Per-request probabilities and per-meter constants. All zero = a healthy meter."""

    slow_prob: float = 0.0
    slow_s: float = 0.5
    timeout_prob: float = 0.0
    exception_prob: float = 0.0
    exception_code: int = 0x06  # SLAVE_DEVICE_BUSY; 0x04 (device failure) is the other common
    corrupt_prob: float = 0.0
    drop_prob: float = 0.0
    clock_drift_ppm: float = 0.0  # the meter's clock runs fast (+) or slow (-)
    rollover_wh: float | None = None  # energy registers wrap to 0 at this value

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v != getattr(MeterFaults(), k)}


@dataclass
class FaultPlan:
    seed: int
    meters: dict[str, MeterFaults] = field(default_factory=dict)
    data: DataFaultPlan | None = None  # meter data faults with their truth; None = none
    _counters: dict[str, int] = field(default_factory=dict)
    _keys: dict[str, int] = field(default_factory=dict)

    def get(self, meter_id: str) -> MeterFaults | None:
        return self.meters.get(meter_id)

    def decide(self, meter_id: str, t_s: float | None = None) -> tuple[Action, MeterFaults | None]:
        """The fate of the next request to `meter_id` (at simulated time `t_s`, which only the
        data faults' missing days need)."""
        mf = self.meters.get(meter_id)
        if self.data is not None and t_s is not None and self.data.silent(meter_id, t_s):
            return Action.TIMEOUT, mf  # a silent day draws nothing: the other draws stay put
        if mf is None:
            return Action.REPLY, None
        n = self._counters.get(meter_id, 0)
        self._counters[meter_id] = n + 1
        key = self._keys.setdefault(meter_id, len(self._keys) + 1)
        u = float(hash_uniform(self.seed, 21, np.array([key], np.int64), np.array([n], np.int64))[0])
        for action, p in (
            (Action.TIMEOUT, mf.timeout_prob),
            (Action.DROP, mf.drop_prob),
            (Action.EXCEPTION, mf.exception_prob),
            (Action.CORRUPT, mf.corrupt_prob),
            (Action.SLOW, mf.slow_prob),
        ):
            if u < p:
                return action, mf
            u -= p
        return Action.REPLY, mf

    def apply_reading(self, reading: Reading, start_s: float) -> Reading:
        """Register-level faults: the data faults (stuck, spike) on the true reading, then clock
        drift on the meter's time stamp and counter rollover."""
        if self.data is not None:
            reading = self.data.apply(reading)
        mf = self.meters.get(reading.meter_id)
        if mf is None:
            return reading
        changes: dict[str, Any] = {}
        if mf.clock_drift_ppm:
            t_s = reading.ts_ms / 1000.0
            offset = (t_s - start_s) * mf.clock_drift_ppm * 1e-6
            changes["ts_ms"] = reading.ts_ms + round(offset * 1000)
            if abs(offset) > CLOCK_INVALID_AFTER_S:
                changes["status"] = reading.status | MeterStatus.CLOCK_INVALID
        if mf.rollover_wh:
            for name in ("import_wh", "export_wh", "import_varh", "export_varh"):
                value = getattr(reading, name)
                if value is not None:
                    changes[name] = value % mf.rollover_wh
        return replace(reading, **changes) if changes else reading

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seed": self.seed,
                               "meters": {m: f.to_dict() for m, f in self.meters.items()}}
        if self.data is not None:
            out["data"] = self.data.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultPlan:
        extra = DataFaultPlan.from_dict(data["data"]) if "data" in data else None
        return cls(int(data["seed"]), {m: MeterFaults(**f) for m, f in data["meters"].items()},
                   extra)


def plan_faults(
    seed: int, meter_ids: list[str], fault_rate: float, start_registers_wh: dict[str, float]
) -> FaultPlan:
    """Give round(fault_rate x N) meters one fault each, deterministically from the seed.

    Rollover meters get a wrap value just above their starting register, so the wrap
    happens early in the run instead of after decades."""
    if not 0.0 <= fault_rate <= 1.0:
        raise ValueError(f"fault_rate must be a fraction in [0, 1], got {fault_rate}")
    rng = np.random.default_rng([seed, 0xFA17])
    chosen = rng.permutation(len(meter_ids))[: round(fault_rate * len(meter_ids))]
    meters: dict[str, MeterFaults] = {}
    for i in sorted(int(c) for c in chosen):
        mid = meter_ids[i]
        kind = int(rng.integers(0, 7))
        if kind == 0:
            mf = MeterFaults(slow_prob=0.3, slow_s=float(rng.uniform(0.2, 2.0)))
        elif kind == 1:
            mf = MeterFaults(timeout_prob=0.2)
        elif kind == 2:
            mf = MeterFaults(exception_prob=0.2, exception_code=int(rng.choice([0x04, 0x06])))
        elif kind == 3:
            mf = MeterFaults(corrupt_prob=0.1)
        elif kind == 4:
            mf = MeterFaults(drop_prob=0.05)
        elif kind == 5:
            mf = MeterFaults(clock_drift_ppm=float(rng.choice([-1, 1]) * rng.uniform(50, 500)))
        else:
            wrap = start_registers_wh.get(mid, 0.0) + float(rng.uniform(1e3, 2e4))
            mf = MeterFaults(rollover_wh=round(wrap, -3))
        meters[mid] = mf
    return FaultPlan(seed, meters)
