"""The meter register maps, by name. Stable lookup API (firmware_sim and edge use it):

    get_map(name) -> MeterMap      name in MAP_NAMES: "sdm630", "sdm120", "em24", "sunspec203"
    MAP_NAMES: tuple[str, ...]

Maps are frozen data (`protocols.meter_map.MeterMap`); see docs/register-maps.md.
"""

from __future__ import annotations

from protocols.maps.carlo_gavazzi import EM24
from protocols.maps.eastron import SDM120, SDM630
from protocols.maps.sunspec import SUNSPEC203
from protocols.meter_map import MeterMap

_MAPS: dict[str, MeterMap] = {m.name: m for m in (SDM630, SDM120, EM24, SUNSPEC203)}
MAP_NAMES: tuple[str, ...] = tuple(_MAPS)


def get_map(name: str) -> MeterMap:
    """The map called `name`; KeyError names the known maps so the caller can fix the typo."""
    try:
        return _MAPS[name]
    except KeyError:
        raise KeyError(f"unknown meter map {name!r}; known: {', '.join(MAP_NAMES)}") from None


__all__ = ["MAP_NAMES", "MeterMap", "get_map"]
