"""Carlo Gavazzi EM24-DIN: INT32 low word first (CDAB) with fixed decimal scales.

Source: Carlo Gavazzi "EM24-DIN communication protocol" (version 2-3) as best we know it.
Addresses marked "unverified" in `note` are plausible positions in that table that we could
not check against the datasheet; confirm them on a real meter (`wattrail meter probe`) before
trusting a deployment. The meter answers the same table on functions 03 and 04; we read with
03. It has no neutral-current register, so `i_n` is always None.
"""

from __future__ import annotations

from protocols.maps import ranges as r
from protocols.meter_map import READ_HOLDING, READ_INPUT, FieldSpec, MeterMap
from protocols.registers import DataType, WordOrder

I32, I16 = DataType.INT32, DataType.INT16
UNVERIFIED = "address unverified against the datasheet"
# INT32 kWh x0.1 cannot go past 2**31 * 100 Wh; we stay inside it so encode never overflows.
EM24_ENERGY = (0.0, 2.0e11)


def _i32(
    name: str,
    address: int,
    unit: str,
    valid: tuple[float, float],
    scale_exp: int,
    si_exp: int = 0,
    note: str = "",
) -> FieldSpec:
    return FieldSpec(name, address, I32, unit, valid, WordOrder.CDAB, scale_exp, None, si_exp, note)


EM24 = MeterMap(
    name="em24",
    title="Carlo Gavazzi EM24-DIN (three-phase, int32 low word first)",
    function=READ_HOLDING,
    server_functions=(READ_HOLDING, READ_INPUT),
    fields=(
        _i32("v_l1", 0x0000, "V", r.VOLTS, -1),
        _i32("v_l2", 0x0002, "V", r.VOLTS, -1),
        _i32("v_l3", 0x0004, "V", r.VOLTS, -1),
        _i32("i_l1", 0x000C, "A", r.AMPS, -3),
        _i32("i_l2", 0x000E, "A", r.AMPS, -3),
        _i32("i_l3", 0x0010, "A", r.AMPS, -3),
        _i32("p_w", 0x0028, "W", r.WATTS, -1),
        _i32("q_var", 0x002C, "var", r.VARS, -1, note=UNVERIFIED),
        FieldSpec("pf", 0x0031, I16, "", r.POWER_FACTOR, scale_exp=-3, note=UNVERIFIED),
        FieldSpec("freq_hz", 0x0033, I16, "Hz", r.HERTZ, scale_exp=-1),
        _i32("import_wh", 0x0034, "kWh", EM24_ENERGY, -1, 3),
        _i32("import_varh", 0x0036, "kvarh", EM24_ENERGY, -1, 3),
        _i32("export_wh", 0x004E, "kWh", EM24_ENERGY, -1, 3, UNVERIFIED),
        _i32("export_varh", 0x0050, "kvarh", EM24_ENERGY, -1, 3, UNVERIFIED),
    ),
    notes="kWh(-)/kvarh(-) and var/PF system addresses are unverified.",
).check()
