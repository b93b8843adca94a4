"""SunSpec model 203 (three-phase wye meter): int16 values with sunssf scale factors.

Layout (SunSpec Information Model, model 203, L = 105): the device map starts at holding
register 40000 with the marker "SunS", then the common model (ID 1, L 65) at 40002, then
model 203 at `BASE` = 40069 (ID, L, then the points below at BASE + offset), then the end
marker (0xFFFF, 0) at 40176. A client that meets another layout must walk the model chain;
this map pins the common case and its `signature` makes the decoder refuse anything else.

Mapping choices: import/export reactive energy are the Q1 and Q4 totals (TotVArhImpQ1,
TotVArhExpQ4) — the quadrants a consuming site lives in; Q2/Q3 (reactive energy while
exporting active energy) are not added in. PF is read as percent (SMDX units "Pct"), which
we have not verified on hardware; the plausibility check catches a meter that sends ratios
with a matching PF_SF. Acc32 0 means "not implemented", so a meter at exactly 0 Wh reads None.
"""

from __future__ import annotations

from protocols.maps import ranges as r
from protocols.meter_map import READ_HOLDING, FieldSpec, MeterMap
from protocols.registers import DataType

I16, ACC = DataType.INT16, DataType.ACC32
START = 40000
COMMON = START + 2  # common model header
BASE = COMMON + 2 + 65  # model 203 header: 40069
END = BASE + 2 + 105  # end-of-map marker: 40176

# Offsets inside model 203, counted from its ID register.
A_SF, V_SF, HZ_SF, W_SF, VAR_SF, PF_SF, WH_SF, VARH_SF = 6, 15, 17, 22, 32, 37, 54, 104


def _p(
    name: str,
    offset: int,
    dtype: DataType,
    unit: str,
    valid: tuple[float, float],
    sf: int,
    si_exp: int = 0,
) -> FieldSpec:
    return FieldSpec(name, BASE + offset, dtype, unit, valid, scale_factor=BASE + sf, si_exp=si_exp)


def _text(address: int, text: str, words: int) -> dict[int, int]:
    raw = text.encode("ascii").ljust(2 * words, b"\0")
    return {address + i: int.from_bytes(raw[2 * i : 2 * i + 2], "big") for i in range(words)}


SUNSPEC203 = MeterMap(
    name="sunspec203",
    title="SunSpec model 203 (three-phase wye meter, int16 + scale factors)",
    function=READ_HOLDING,
    fields=(
        _p("i_l1", 3, I16, "A", r.AMPS, A_SF),
        _p("i_l2", 4, I16, "A", r.AMPS, A_SF),
        _p("i_l3", 5, I16, "A", r.AMPS, A_SF),
        _p("v_l1", 8, I16, "V", r.VOLTS, V_SF),
        _p("v_l2", 9, I16, "V", r.VOLTS, V_SF),
        _p("v_l3", 10, I16, "V", r.VOLTS, V_SF),
        _p("freq_hz", 16, I16, "Hz", r.HERTZ, HZ_SF),
        _p("p_w", 18, I16, "W", r.WATTS, W_SF),
        _p("q_var", 28, I16, "var", r.VARS, VAR_SF),
        _p("pf", 33, I16, "Pct", r.POWER_FACTOR, PF_SF, si_exp=-2),
        _p("export_wh", 38, ACC, "Wh", r.ENERGY_WH, WH_SF),
        _p("import_wh", 46, ACC, "Wh", r.ENERGY_WH, WH_SF),
        _p("import_varh", 72, ACC, "varh", r.ENERGY_WH, VARH_SF),
        _p("export_varh", 96, ACC, "varh", r.ENERGY_WH, VARH_SF),
    ),
    # Preferred exponents: the encoder starts here and coarsens only when a value overflows.
    scale_factors={
        BASE + A_SF: -2,
        BASE + V_SF: -1,
        BASE + HZ_SF: -2,
        BASE + W_SF: 0,
        BASE + VAR_SF: 0,
        BASE + PF_SF: -2,
        BASE + WH_SF: 0,
        BASE + VARH_SF: 0,
    },
    signature={
        START: 0x5375,  # "Su"
        START + 1: 0x6E53,  # "nS"
        BASE: 203,
        BASE + 1: 105,
    },
    static_words={
        COMMON: 1,
        COMMON + 1: 65,
        **_text(COMMON + 2, "Wattrail", 16),  # Mn
        **_text(COMMON + 18, "SIM-203", 16),  # Md
        **_text(COMMON + 42, "0.1.0", 8),  # Vr
        COMMON + 66: 1,  # DA (device address)
        END: 0xFFFF,
        END + 1: 0,
    },
    # Every register inside a SunSpec model is defined, so gaps are safe to read: one read
    # then covers the whole of model 203 (105 words).
    max_gap=64,
    sentinels=True,
).check()
