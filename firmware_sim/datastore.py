"""The register datastore: Modbus words computed from the simulation at request time.

pymodbus asks its context `async_getValues(device_id, function_code, address, count)`; this
store answers from the current simulated instant: it builds the meter's `Reading`, applies the
register-level faults and encodes it with the `protocols` encoder (`server_blocks`), so the
words are exactly what the edge's decoder expects. Encoded blocks are cached per meter per
time quantum (one simulated second, or a quarter of a real second at high speed-ups), so 50
clients hammering one meter cost one encode per quantum, not one per request.

A `Gateway` is what one TCP port or serial line exposes: unit id -> meter id. A gateway with
`any_unit=True` is a single meter on its own port, answering whatever unit id it is asked for
(as most Modbus-TCP meters do).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import NoSuchIdException

from firmware_sim.clock import SimClock
from firmware_sim.faults import FaultPlan
from firmware_sim.meters import MeterReader
from protocols.encode import server_blocks
from protocols.errors import EncodeError
from protocols.maps import get_map
from protocols.meter_map import MeterMap

log = logging.getLogger(__name__)
WRITE_FUNCTIONS = frozenset({5, 6, 15, 16, 22, 23})


@dataclass
class Gateway:
    gateway_id: str
    units: dict[int, str]  # unit id -> meter id
    any_unit: bool = False

    def meter_for(self, unit_id: int) -> str | None:
        if self.any_unit:
            return next(iter(self.units.values()))
        return self.units.get(unit_id)


@dataclass
class StoreStats:
    requests: int = 0
    encodes: int = 0
    exceptions: int = 0
    faults: dict[str, int] = field(default_factory=dict)


class RegisterStore:
    """Shared by every server of one simulator process (one simulation, one clock)."""

    def __init__(self, reader: MeterReader, clock: SimClock, faults: FaultPlan | None = None) -> None:
        self.reader = reader
        self.clock = clock
        self.faults = faults or FaultPlan(reader.sim.grid.seed)
        self.stats = StoreStats()
        models = reader.sim.grid.meter_models()
        self._maps: dict[str, MeterMap] = {m: get_map(models[m]) for m in models}
        self._cache: dict[str, tuple[float, dict[int, tuple[int, tuple[int, ...]]]]] = {}
        # quantum: simulated seconds a cached encoding stays valid
        self.quantum_s = 1.0 if clock.manual else max(1.0, clock.speed * 0.25)

    def now(self) -> float:
        t = self.clock.now()
        if self.clock.manual:
            return t
        return (t // self.quantum_s) * self.quantum_s

    def blocks(self, meter_id: str) -> dict[int, tuple[int, tuple[int, ...]]]:
        """Function code -> (first address, words) for `meter_id` at the current instant."""
        t = self.now()
        hit = self._cache.get(meter_id)
        if hit is not None and hit[0] == t:
            return hit[1]
        reading = self.faults.apply_reading(
            self.reader.reading(meter_id, t), self.reader.sim.start_minute * 60.0
        )
        encoded = server_blocks(self._maps[meter_id], reading)
        out = {fc: (b.start, b.words) for fc, b in encoded.items()}
        self._cache[meter_id] = (t, out)
        self.stats.encodes += 1
        return out

    def words(self, meter_id: str, func_code: int, address: int, count: int) -> list[int] | ExcCodes:
        if func_code in WRITE_FUNCTIONS:
            return ExcCodes.ILLEGAL_FUNCTION  # simulated meters are read-only
        try:
            blocks = self.blocks(meter_id)
        except EncodeError:
            # a value the meter's format cannot carry: a real meter would fault too
            log.exception("cannot encode meter %s", meter_id)
            return ExcCodes.DEVICE_FAILURE
        if func_code not in blocks:
            return ExcCodes.ILLEGAL_FUNCTION
        start, words = blocks[func_code]
        offset = address - start
        if offset < 0 or offset + count > len(words) or count < 1:
            return ExcCodes.ILLEGAL_ADDRESS
        return list(words[offset : offset + count])


class GatewayContext:
    """The duck-typed pymodbus server context for one gateway (pymodbus calls these three)."""

    def __init__(self, store: RegisterStore, gateway: Gateway) -> None:
        self.store = store
        self.gateway = gateway

    def device_ids(self) -> list[int]:
        return list(self.gateway.units)

    async def async_getValues(  # noqa: N802 - the name pymodbus calls
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | ExcCodes:
        self.store.stats.requests += 1
        meter = self.gateway.meter_for(device_id)
        if meter is None:
            raise NoSuchIdException(f"no meter at unit {device_id} on {self.gateway.gateway_id}")
        result = self.store.words(meter, func_code, address, count)
        if isinstance(result, ExcCodes):
            self.store.stats.exceptions += 1
        return result

    async def async_setValues(  # noqa: N802 - the name pymodbus calls
        self, device_id: int, func_code: int, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        if self.gateway.meter_for(device_id) is None:
            raise NoSuchIdException(f"no meter at unit {device_id} on {self.gateway.gateway_id}")
        return ExcCodes.ILLEGAL_FUNCTION
