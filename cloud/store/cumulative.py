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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cloud.store.readings_csv import ParsedReadings


@dataclass
class RegisterSeries:
    meter_code: npt.NDArray[np.int64]
    ts_us: npt.NDArray[np.int64]
    import_wh: npt.NDArray[np.float64]
    # name -> (values, missing): export_wh (if in the file), voltages and currents
    values: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]]

    def __len__(self) -> int:
        return len(self.ts_us)


def _running(delta_wh: npt.NDArray[np.float64], seg_first: npt.NDArray[np.bool_],
             base: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Register before and after each row, per segment, starting at `base` (one per row)."""
    mwh = np.rint(delta_wh * 1000.0).astype(np.int64)
    after = np.cumsum(mwh)
    before = after - mwh
    seg_start = np.flatnonzero(seg_first)
    offset = np.repeat(before[seg_start], np.diff(np.append(seg_start, len(mwh))))
    return (before - offset) / 1000.0 + base, (after - offset) / 1000.0 + base


def to_register_series(p: ParsedReadings, base_import: npt.NDArray[np.float64],
                       base_export: npt.NDArray[np.float64],
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
        if name == "export_wh":
            b, a = _running(vals, seg_first, base_export[code])
            series.values[name] = (place(a, b), np.zeros(m, bool))
        else:  # interval means: only on the end reading
            out = np.zeros(m, np.float64)
            out[out_end] = vals
            miss = np.ones(m, bool)
            miss[out_end] = missing
            series.values[name] = (out, miss)
    return series
