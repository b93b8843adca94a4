"""Alarm and tamper events for `wattrail/v1/<agent>/events`: what changed since last cycle.

A meter's status bits (protocols.reading.MeterStatus) are in every signed reading; this module
only turns *changes* into notifications, so an operator hears about an opened cover once, when
it opens, not every 15 s while it stays open. Only readings that carry a status (VALID,
DECODE_ERROR with partial values) count: a COMMS_LOST reading has no status, and reading it as
"all flags cleared" would announce a fake recovery.

Events are JSON objects with `event`, `meter_id`, `at_ms` and the flag names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from protocols.reading import MeterStatus, Quality, Reading

# Someone handled the meter or the supply: the theft team wants these at once.
TAMPER = MeterStatus.COVER_OPEN | MeterStatus.MAGNETIC_FIELD | MeterStatus.REVERSE_CURRENT \
    | MeterStatus.REGISTER_ROLLBACK | MeterStatus.METER_REPLACED
# Faults and power quality: for the operations team.
ALARM = MeterStatus.PHASE_LOSS | MeterStatus.CLOCK_INVALID | MeterStatus.POWER_FAIL


def flag_names(bits: int) -> list[str]:
    return [f.name for f in MeterStatus if f.value and bits & f.value and f.name]


class StatusWatch:
    """Remembers each meter's last known status bits and reports set/cleared flags."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def changes(self, readings: Iterable[Reading]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for r in readings:
            if r.quality is Quality.COMMS_LOST:
                continue
            before = self.last.get(r.meter_id, 0)
            self.last[r.meter_id] = r.status
            raised, cleared = r.status & ~before, before & ~r.status
            if raised & TAMPER:
                out.append({"event": "tamper", "meter_id": r.meter_id, "at_ms": r.ts_ms,
                            "flags": flag_names(raised & TAMPER), "status": r.status})
            if raised & ALARM:
                out.append({"event": "alarm", "meter_id": r.meter_id, "at_ms": r.ts_ms,
                            "flags": flag_names(raised & ALARM), "status": r.status})
            if cleared & (TAMPER | ALARM):
                out.append({"event": "cleared", "meter_id": r.meter_id, "at_ms": r.ts_ms,
                            "flags": flag_names(cleared & (TAMPER | ALARM)), "status": r.status})
        return out
