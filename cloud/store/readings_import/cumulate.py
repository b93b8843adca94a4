"""Turn per-interval energy into the cumulative register series the readings table holds.

Input rows are intervals [start, end) with the energy consumed in each, sorted by (meter,
start), non-overlapping. Output, per meter:
- a reading at every interval's end whose registers are the running total so far;
- a reading at an interval's start where the previous interval did not end there (the meter's
  first interval, and after every gap), holding the running total before it, so each
  interval's energy is exactly the difference of two stored readings and a gap never smears
  an interval's energy over the missing time. Such start readings carry registers only.
The running total starts from `base_*` (the meter's latest stored register at or before its
first interval here, else 0) and is summed in integer mWh, so it is exact whatever the order
of magnitude.

No register may exceed MAX_REGISTER_WH (limits.py says why: int64 mWh and float8 Wh
stay exact below it): `register_problems` names the first line of each meter where one would,
and `to_register_series` refuses input that was not checked. The mWh sum restarts at every
meter, so the accumulator never holds more than one meter's total, however many meters the
file has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, cast

import numpy as np
import numpy.typing as npt

from cloud.store.errors import Problem
from cloud.store.readings_import.columns import CUMULATIVE
from cloud.store.readings_import.limits import MAX_REGISTER_WH
from cloud.store.readings_import.parse import ParsedReadings

_A = TypeVar("_A", npt.NDArray[np.int64], npt.NDArray[np.float64])


@dataclass
class RegisterSeries:
    meter_code: npt.NDArray[np.int64]
    ts_us: npt.NDArray[np.int64]
    import_wh: npt.NDArray[np.float64]
    # name -> (values, missing): export_wh (if in the file), voltages and currents
    values: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]]

    def __len__(self) -> int:
        return len(self.ts_us)


def _cumsum_per_meter(x: _A, seg_first: npt.NDArray[np.bool_]) -> _A:
    """Running sum of `x` that restarts at every True of `seg_first` (the first row of each
    meter): each restart subtracts the previous meter's total, so the running value is always
    one meter's sum."""
    if len(x) == 0:
        return x.copy()
    seg_start = np.flatnonzero(seg_first)
    step = x.copy()
    step[seg_start[1:]] -= np.add.reduceat(x, seg_start)[:-1]
    return cast(_A, np.cumsum(step))  # numpy stubs widen the dtype


def _over_limit(delta_wh: npt.NDArray[np.float64], seg_first: npt.NDArray[np.bool_],
                base: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Rows whose register after them exceeds MAX_REGISTER_WH (or whose deltas alone do), and
    the register there. In float64: every delta is finite and at most 100 MW x its interval
    (parse.py), so the sums are finite and close enough to compare with the bound."""
    total = _cumsum_per_meter(delta_wh, seg_first)
    register = total + base
    return (register > MAX_REGISTER_WH) | (total > MAX_REGISTER_WH), register


Bases = dict[str, npt.NDArray[np.float64]]  # register name -> stored register per meter code


def register_problems(p: ParsedReadings, base_import: npt.NDArray[np.float64],
                      bases: Bases) -> list[Problem]:
    """One problem per meter and register that would exceed MAX_REGISTER_WH, on the first line
    where it would; `base_import` and `bases` (the CUMULATIVE columns) per meter code as for
    `to_register_series`."""
    seg_first = np.ones(len(p.meter_code), bool)
    seg_first[1:] = p.meter_code[1:] != p.meter_code[:-1]
    columns = {"import_wh": (p.import_wh, base_import)}
    for name in CUMULATIVE:
        if name in p.optional:
            columns[name] = (p.optional[name][0], bases[name])
    problems = []
    for name, (delta, base) in columns.items():
        over, register = _over_limit(delta, seg_first, base[p.meter_code])
        seen: set[int] = set()
        for r in np.flatnonzero(over):
            code = int(p.meter_code[r])
            if code in seen:
                continue
            seen.add(code)
            mid = p.meter_ids[code]
            problems.append(Problem(
                int(p.line[r]), f"the {name} register of meter {mid} would reach {register[r]:.6g} Wh "
                f"here, above the {MAX_REGISTER_WH:g} Wh a register may hold (it starts at "
                f"{base[code]:.6g} Wh, the meter's stored register before this file, plus the "
                "intervals so far); check the energy unit (Wh, not mWh)", name, mid))
    return problems


def _running(delta_wh: npt.NDArray[np.float64], seg_first: npt.NDArray[np.bool_],
             base: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Register before and after each row, per segment, starting at `base` (one per row)."""
    if not (np.isfinite(delta_wh).all() and (delta_wh >= 0).all()) \
            or _over_limit(delta_wh, seg_first, base)[0].any():
        raise ValueError("interval energy must be finite, >= 0 and keep every register within "
                         f"{MAX_REGISTER_WH:g} Wh: check it with parse.py and register_problems first")
    # below the bound every value fits int64 mWh with room to spare (limits.py)
    mwh = np.rint(delta_wh * 1000.0).astype(np.int64)
    after = _cumsum_per_meter(mwh, seg_first)
    before = after - mwh
    return before / 1000.0 + base, after / 1000.0 + base


def to_register_series(p: ParsedReadings, base_import: npt.NDArray[np.float64], bases: Bases,
                       has_start_reading: npt.NDArray[np.bool_]) -> RegisterSeries:
    """`base_*` and `has_start_reading` are per meter code; the latter says a stored reading
    already sits exactly at the meter's first interval start (so none is emitted there)."""
    n = len(p.start_us)
    code = p.meter_code
    seg_first = np.ones(n, bool)
    seg_first[1:] = code[1:] != code[:-1]
    gap = seg_first.copy()
    gap[1:] |= p.start_us[1:] != p.end_us[:-1]
    emit_start = gap & ~(seg_first & has_start_reading[code])
    out_end = np.arange(n) + np.cumsum(emit_start)  # where each end reading lands
    out_start = (out_end - 1)[emit_start]
    m = n + int(emit_start.sum())

    def place(at_end: npt.NDArray[np.float64], at_start: npt.NDArray[np.float64]
              ) -> npt.NDArray[np.float64]:
        out = np.empty(m, np.float64)
        out[out_end] = at_end
        out[out_start] = at_start[emit_start]
        return out

    ts = np.empty(m, np.int64)
    ts[out_end] = p.end_us
    ts[out_start] = p.start_us[emit_start]
    codes = np.empty(m, np.int64)
    codes[out_end] = code
    codes[out_start] = code[emit_start]
    before, after = _running(p.import_wh, seg_first, base_import[code])
    series = RegisterSeries(codes, ts, place(after, before), {})
    is_start = np.zeros(m, bool)
    is_start[out_start] = True
    for name, (vals, missing) in p.optional.items():
        if name in CUMULATIVE:
            b, a = _running(vals, seg_first, bases[name][code])
            series.values[name] = (place(a, b), np.zeros(m, bool))
        else:  # interval means: only on the end reading
            out = np.zeros(m, np.float64)
            out[out_end] = vals
            miss = np.ones(m, bool)
            miss[out_end] = missing
            series.values[name] = (out, miss)
    return series
