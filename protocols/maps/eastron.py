"""Eastron SDM630 (three-phase) and SDM120 (single-phase): input registers, float32 ABCD.

Source: Eastron "SDM630 Modbus protocol" and "SDM120 Modbus protocol" register tables
(0-based addresses; the vendor lists 30001-style numbers, i.e. address + 30001). Values are
IEEE-754 single precision, high word first, in V, A, W, var, Hz, kWh, kvarh; energies are
converted to Wh/varh here. The SDM120 keeps V/I/energy/frequency where the SDM630 keeps
them but has its own power, reactive power and PF addresses (0x0C, 0x18, 0x1E).
"""

from __future__ import annotations

from protocols.maps import ranges as r
from protocols.meter_map import READ_INPUT, FieldSpec, MeterMap
from protocols.registers import DataType

F32 = DataType.FLOAT32


def _f(name: str, address: int, unit: str, valid: tuple[float, float], si_exp: int = 0) -> FieldSpec:
    return FieldSpec(name, address, F32, unit, valid, si_exp=si_exp)


_ENERGY = (
    _f("import_wh", 0x0048, "kWh", r.ENERGY_WH, 3),
    _f("export_wh", 0x004A, "kWh", r.ENERGY_WH, 3),
    _f("import_varh", 0x004C, "kvarh", r.ENERGY_WH, 3),
    _f("export_varh", 0x004E, "kvarh", r.ENERGY_WH, 3),
    _f("freq_hz", 0x0046, "Hz", r.HERTZ),
)

SDM630 = MeterMap(
    name="sdm630",
    title="Eastron SDM630 (three-phase, float32)",
    function=READ_INPUT,
    fields=(
        _f("v_l1", 0x0000, "V", r.VOLTS),
        _f("v_l2", 0x0002, "V", r.VOLTS),
        _f("v_l3", 0x0004, "V", r.VOLTS),
        _f("i_l1", 0x0006, "A", r.AMPS),
        _f("i_l2", 0x0008, "A", r.AMPS),
        _f("i_l3", 0x000A, "A", r.AMPS),
        _f("p_w", 0x0034, "W", r.WATTS),
        _f("q_var", 0x003C, "var", r.VARS),
        _f("pf", 0x003E, "", r.POWER_FACTOR),
        *_ENERGY,
        _f("i_n", 0x00E0, "A", r.AMPS),
    ),
).check()

SDM120 = MeterMap(
    name="sdm120",
    title="Eastron SDM120 (single-phase, float32)",
    function=READ_INPUT,
    fields=(
        _f("v_l1", 0x0000, "V", r.VOLTS),
        _f("i_l1", 0x0006, "A", r.AMPS),
        _f("p_w", 0x000C, "W", r.WATTS),
        _f("q_var", 0x0018, "var", r.VARS),
        _f("pf", 0x001E, "", r.POWER_FACTOR),
        *_ENERGY,
    ),
).check()
