"""The register-map data model: what a meter family keeps where, as plain frozen data.

A map is a table of `FieldSpec`s, one per `Reading` field the meter provides. A field's SI
value is

    si = raw * 10**scale_exp * 10**sf * 10**si_exp

where `raw` is the register content (int or float32), `scale_exp` is the vendor's fixed
decimal scale (EM24 volts: raw is V x 10 -> -1), `sf` is the value of a SunSpec scale-factor
register (0 when the field has none) and `si_exp` converts the meter's unit to the `Reading`'s
(kWh -> Wh: 3, SunSpec power-factor percent -> ratio: -2). Every scale we meet is a power of
ten, so this is exact in decimal and we divide by 10**n instead of multiplying by 0.1.

`valid` is the physical plausibility range in SI units: a decoded value outside it is marked
DECODE_ERROR, never clipped. `signature` holds words the decoder reads and checks to be sure
the device is what the map says (SunSpec "SunS" marker and model header); `static_words` are
words a simulated server exposes but no client needs (SunSpec common model, end marker).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from protocols.reading import MEASURED_FIELDS
from protocols.registers import DataType, WordOrder

READ_INPUT = 4  # Modbus function 04, input registers
READ_HOLDING = 3  # Modbus function 03, holding registers


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """Where one `Reading` field lives and how to turn its words into SI units."""

    field: str  # the `Reading` attribute, e.g. "v_l1"
    address: int  # 0-based Modbus address of the first word
    dtype: DataType
    unit: str  # the meter's unit, for docs: "V", "kWh", "Pct", ...
    valid: tuple[float, float]  # plausible SI range, inclusive
    order: WordOrder = WordOrder.ABCD
    scale_exp: int = 0  # fixed vendor scale: raw * 10**scale_exp = value in `unit`
    scale_factor: int | None = None  # address of a SunSpec sunssf register, if any
    si_exp: int = 0  # value in `unit` * 10**si_exp = SI value
    note: str = ""  # provenance, e.g. "address unverified"

    @property
    def words(self) -> int:
        return self.dtype.words

    @property
    def addresses(self) -> range:
        return range(self.address, self.address + self.words)

    def exponent(self, sf: int = 0) -> int:
        """Total power of ten from raw register content to SI units."""
        return self.scale_exp + sf + self.si_exp

    def to_si(self, raw: float, sf: int = 0) -> float:
        # Dividing by an exact 10**n rounds once; multiplying by 0.1 would round twice.
        e = self.exponent(sf)
        step: int = 10 ** abs(e)  # an exact int; typeshed types int ** int as Any
        return float(raw) * step if e >= 0 else float(raw) / step

    def from_si(self, value: float, sf: int = 0) -> float:
        """The unrounded raw value that carries `value`; callers round for integer types."""
        e = self.exponent(sf)
        step: int = 10 ** abs(e)
        return float(value) / step if e >= 0 else float(value) * step


@dataclass(frozen=True, slots=True)
class MeterMap:
    """One meter family's register layout. Build with `MeterMap(...)`; `check()` runs at import."""

    name: str  # lookup key: "sdm630", "sdm120", "em24", "sunspec203"
    title: str
    function: int  # the function code the planner reads with
    fields: tuple[FieldSpec, ...]
    server_functions: tuple[int, ...] = ()  # codes a real meter answers on (default: function)
    scale_factors: Mapping[int, int] = field(default_factory=dict)  # sunssf addr -> preferred sf
    signature: Mapping[int, int] = field(default_factory=dict)  # addr -> word the decoder checks
    static_words: Mapping[int, int] = field(default_factory=dict)  # server-only filler words
    sentinels: bool = False  # SunSpec "not implemented" codes apply (registers.SENTINEL)
    max_gap: int = 16  # default planner gap; lower it for meters that reject unmapped addresses
    notes: str = ""

    def spec(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.field == name), None)

    @property
    def functions(self) -> tuple[int, ...]:
        return self.server_functions or (self.function,)

    def wanted_spans(self) -> list[tuple[int, int]]:
        """(start, count) of every value the decoder needs, including signature words."""
        spans = {(f.address, f.words) for f in self.fields}
        spans |= {(a, 1) for a in self.scale_factors}
        spans |= {(a, 1) for a in self.signature}
        return sorted(spans)

    def check(self) -> MeterMap:
        """Fail fast on a map that contradicts itself; returns self so tables can call it."""
        taken: dict[int, str] = {}
        for f in self.fields:
            if f.field not in MEASURED_FIELDS:
                raise ValueError(f"{self.name}: {f.field!r} is not a Reading field")
            if f.dtype is DataType.SUNSSF:
                raise ValueError(f"{self.name}: {f.field} cannot be a scale factor")
            if f.scale_factor is not None and f.scale_factor not in self.scale_factors:
                raise ValueError(f"{self.name}: {f.field} uses unlisted sunssf {f.scale_factor}")
            lo, hi = f.valid
            if not lo <= hi:
                raise ValueError(f"{self.name}: {f.field} has an empty valid range")
            for a in f.addresses:
                if a in taken:
                    raise ValueError(f"{self.name}: {f.field} overlaps {taken[a]} at {a}")
                taken[a] = f.field
        names = [f.field for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: a Reading field is mapped twice")
        for a in (*self.scale_factors, *self.signature):
            if a in taken:
                raise ValueError(f"{self.name}: register {a} is both a value and a constant")
        return self
