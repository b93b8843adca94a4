"""The reading record: what one meter said at one instant, in SI units.

Rules every producer and consumer follows (DESIGN.md, "Reading"):
- `ts_ms` is UTC milliseconds since the Unix epoch, the instant the value was *read*.
- Energy registers are cumulative and in Wh / varh (not kWh): decoders convert.
- A value the meter did not give us is `None`. Missing is missing: a stale value is never
  repeated under a new timestamp, and nothing is interpolated here. Whoever estimates a value
  (analytics) marks it `ESTIMATED` in its own output.
- `quality` says how far to trust the whole record; `status` carries the meter's own flags.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields


class Quality(enum.IntEnum):
    """How far a reading can be trusted. Stored as a small integer; never renumber."""

    VALID = 0
    STALE = 1  # the meter answered, but with a value it had not refreshed
    ESTIMATED = 2  # computed, not measured (never produced by the edge)
    COMMS_LOST = 3  # the poll failed; the record has no measured values
    DECODE_ERROR = 4  # the meter answered with words that do not decode to physical values


class MeterStatus(enum.IntFlag):
    """Meter status and tamper flags, as a bitmask. Never renumber existing bits."""

    NONE = 0
    COVER_OPEN = 1 << 0
    MAGNETIC_FIELD = 1 << 1
    REVERSE_CURRENT = 1 << 2
    PHASE_LOSS = 1 << 3
    CLOCK_INVALID = 1 << 4
    REGISTER_ROLLBACK = 1 << 5
    POWER_FAIL = 1 << 6
    METER_REPLACED = 1 << 7


@dataclass(frozen=True, slots=True)
class Reading:
    """One meter's values at one instant. `None` means "not provided", never zero."""

    meter_id: str
    ts_ms: int
    import_wh: float | None = None
    export_wh: float | None = None
    import_varh: float | None = None
    export_varh: float | None = None
    v_l1: float | None = None
    v_l2: float | None = None
    v_l3: float | None = None
    i_l1: float | None = None
    i_l2: float | None = None
    i_l3: float | None = None
    i_n: float | None = None
    p_w: float | None = None
    q_var: float | None = None
    pf: float | None = None
    freq_hz: float | None = None
    status: int = 0
    quality: Quality = Quality.VALID


# The measured fields, in a fixed order: the columnar envelope and the database use it.
MEASURED_FIELDS: tuple[str, ...] = tuple(
    f.name for f in fields(Reading) if f.name not in ("meter_id", "ts_ms", "status", "quality")
)
# Groups of them that code treats alike; every other list of fields is derived from these.
# Cumulative registers: they only grow, an interval's energy is the difference of two readings.
REGISTERS: tuple[str, ...] = ("import_wh", "export_wh", "import_varh", "export_varh")
PHASE_VOLTAGES: tuple[str, ...] = ("v_l1", "v_l2", "v_l3")
PHASE_CURRENTS: tuple[str, ...] = ("i_l1", "i_l2", "i_l3")
# Instantaneous (or interval-mean) values measured once per meter, not per phase.
SCALARS: tuple[str, ...] = tuple(
    f for f in MEASURED_FIELDS if f not in (*REGISTERS, *PHASE_VOLTAGES, *PHASE_CURRENTS))
assert set(REGISTERS + PHASE_VOLTAGES + PHASE_CURRENTS) <= set(MEASURED_FIELDS)
