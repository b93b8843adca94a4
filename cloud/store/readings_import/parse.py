"""Parse and check a historical readings CSV without touching the database.

`parse_readings_csv(data)` returns the rows as columns, sorted by (meter, interval start),
and every problem it found with its line. The checks that need the database (is the meter
known?) are load.py's; this module only needs the bytes.

Each row is one interval of one meter: `import_wh` is the energy consumed *during* the interval
(not a register reading), as meter-data-management systems export it.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from cloud.store.errors import Problem
from cloud.store.readings_import.columns import ColumnPlan, check_header_bytes, plan_columns
from cloud.store.readings_import.limits import MAX_POWER_W, TimeWindow, iso, max_interval_wh
from cloud.store.readings_import.scan import (
    E_EMPTY,
    E_NUMBER,
    E_OK,
    E_QUOTE,
    E_SLOW,
    E_TIMESTAMP,
    R_BLANK,
    R_FIELDS,
    same_ids,
    tokenize,
)
from protocols.reading import PHASE_CURRENTS, PHASE_VOLTAGES, REGISTERS

MAX_PROBLEMS = 1000  # kept with their details; the total is always counted
_FIELD_MESSAGES = {
    E_EMPTY: "is empty",
    E_NUMBER: "is not a number",
    E_TIMESTAMP: "is not a timestamp like 2024-01-31T23:45:00Z or 2024-01-31T23:45:00+01:00",
    E_QUOTE: "has a stray or unterminated double quote",
}
# export_wh, when the column is there, is cumulated like import_wh, so a gap would shift every
# later register value: it must be given on every row. Voltages and currents may be empty.
_REQUIRED = ("meter_id", "interval_start", "interval_end", "interval_minutes", "interval_seconds",
             *REGISTERS)
_NONNEGATIVE = (*REGISTERS, *PHASE_VOLTAGES, *PHASE_CURRENTS, "i_n")
# mean powers are signed (positive is import) and at most MAX_POWER_W either way
_POWER = ("p_w", "q_var")
# closed ranges outside which a value is a unit or sign mix-up, not a measurement: a power
# factor is a cosine; a grid runs at 50 or 60 Hz and trips long before +-10 Hz (mHz or
# rad/s land far outside)
_RANGES = {"pf": (-1.0, 1.0, "a power factor lies in [-1, 1]"),
           "freq_hz": (40.0, 70.0, "a grid frequency in Hz lies in [40, 70] (50 or 60 Hz "
                                   "grids); check the unit (Hz, not mHz)")}
# at most MAX_POWER_W x the interval (limits.py); reactive energy has the same bound
_ENERGY = REGISTERS
_SHOW_CHARS = 40  # a value quoted in a message is cut there (a 5000-digit number is one line)


class Problems:
    """Collects problems, keeping the first MAX_PROBLEMS and counting the rest."""

    def __init__(self) -> None:
        self.items: list[Problem] = []
        self.total = 0

    def add(self, line: int | None, message: str, where: str = "", key: str | None = None) -> None:
        self.total += 1
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(Problem(line, message, where, key))

    def sorted(self) -> list[Problem]:
        return sorted(self.items, key=lambda p: (p.line or 0, p.where))


@dataclass
class ParsedReadings:
    """Good rows only, sorted by (meter_code, start_us)."""

    rows: int  # data rows in the file, good or bad
    line: npt.NDArray[np.int64]
    meter_code: npt.NDArray[np.int64]  # index into meter_ids
    meter_ids: list[str]
    start_us: npt.NDArray[np.int64]  # µs since the Unix epoch, UTC
    end_us: npt.NDArray[np.int64]
    import_wh: npt.NDArray[np.float64]
    # optional columns present in the file: name -> (values, missing mask)
    optional: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]] = field(
        default_factory=dict)


def _shown(text: str) -> str:
    return repr(text) if len(text) <= _SHOW_CHARS else repr(text[:_SHOW_CHARS]) + f"... ({len(text)} chars)"


_LINE_SHOWN = 64 * 1024  # of a line, for messages only: the csv module refuses longer fields


def _line_fields(data: bytes, start: int) -> list[str]:
    end = data.find(b"\n", start)
    end = len(data) if end < 0 else end
    text = data[start:min(end, start + _LINE_SHOWN)].decode("utf-8", "replace").rstrip("\r")
    return [f.strip() for f in next(csv.reader([text], skipinitialspace=True), [])]


def _field_problems(data: bytes, plan: ColumnPlan, tk_err: npt.NDArray[np.uint8],
                    tk_line: npt.NDArray[np.int64], tk_start: npt.NDArray[np.int64],
                    floats: npt.NDArray[np.float64], problems: Problems) -> npt.NDArray[np.bool_]:
    """Report bad fields; convert E_SLOW numbers with float(); return the rows that are bad.
    Empty optional values are not errors (missing is missing): callers see them as E_EMPTY."""
    required = np.array([n in _REQUIRED for n in plan.names])
    bad_field = (tk_err != E_OK) & ~((tk_err == E_EMPTY) & ~required[None, :])
    slow = tk_err == E_SLOW
    for r, c in zip(*np.nonzero(bad_field & ~slow), strict=True):
        if len(problems.items) >= MAX_PROBLEMS:
            problems.total += int(np.count_nonzero(bad_field & ~slow)) - len(problems.items)
            break
        name = plan.names[c]
        vals = _line_fields(data, int(tk_start[r]))
        shown = f" ({_shown(vals[c])})" if c < len(vals) and vals[c] else ""
        what = _FIELD_MESSAGES[int(tk_err[r, c])]
        if name in ("interval_minutes", "interval_seconds") and int(tk_err[r, c]) == E_NUMBER:
            what = f"must be a whole number of {name.split('_')[1]}, 1 or more"
        problems.add(int(tk_line[r]), f"{name}{shown} {what}", name)
    for r, c in zip(*np.nonzero(slow), strict=True):  # rare: long mantissas, big exponents
        end = data.find(b"\n", int(tk_start[r]))
        if (len(data) if end < 0 else end) - int(tk_start[r]) > _LINE_SHOWN:
            # never convert a cut-off text: a value is read whole or refused
            problems.add(int(tk_line[r]), f"{plan.names[c]}: the line is longer than "
                                          f"{_LINE_SHOWN} bytes; no number needs that", plan.names[c])
            continue
        text = _line_fields(data, int(tk_start[r]))[c]
        value = float(text)  # the kernel checked the syntax
        if math.isinf(value):  # 1e309, a 400-digit number: float() overflows, silently
            name = plan.names[c]
            problems.add(int(tk_line[r]), f"{name} ({_shown(text)}) is too large to be a number "
                                          "(it overflows to infinity)", name)
            continue
        floats[r, plan.slot(plan.names[c])] = value
        bad_field[r, c] = False
    return bad_field.any(axis=1)  # type: ignore[no-any-return]  # numpy stubs: any(axis=...) is Any


_MAX_METER_ID = 200


def _bad_meter_id(m: str) -> str | None:
    """What makes a meter id unstorable or unreadable; None when it is fine."""
    if "\ufffd" in m:
        return "is not UTF-8 text; save the file as UTF-8"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in m):
        return "holds a control character (a NUL, a tab, ...)"
    if len(m) > _MAX_METER_ID:
        return f"is longer than {_MAX_METER_ID} characters"
    return None


def _factorize(buf: npt.NDArray[np.uint8], id_s: npt.NDArray[np.int64],
               id_e: npt.NDArray[np.int64], id_h: npt.NDArray[np.uint64]
               ) -> tuple[npt.NDArray[np.int64], list[str]]:
    """Meter id of every row as a code into the sorted list of distinct ids. Rows are grouped
    by the ids' 64-bit hashes, then every row's bytes are compared with its group's first row,
    so a hash collision cannot merge two meters (it falls back to comparing bytes)."""
    if len(id_s) == 0:
        return np.zeros(0, np.int64), []
    _, first, codes = np.unique(id_h, return_index=True, return_inverse=True)
    if not same_ids(buf, id_s, id_e, codes, first):
        width = int((id_e - id_s).max())  # collision: slow, exact
        idx = np.minimum(id_s[:, None] + np.arange(width)[None, :], len(buf) - 1)
        raw = np.where(idx < id_e[:, None], buf[idx], 0).astype(np.uint8)
        uniq, codes = np.unique(raw.view(f"S{width}").ravel(), return_inverse=True)
        return codes.astype(np.int64), [u.decode("utf-8", "replace") for u in uniq]
    ids = [bytes(buf[id_s[f]:id_e[f]]).decode("utf-8", "replace") for f in first]
    # codes follow id order, so sorting by code sorts rows by meter id
    order = np.argsort(np.array(ids, dtype=object)).astype(np.int64)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[codes], [ids[i] for i in order]


def _sort_order(codes: npt.NDArray[np.int64], start: npt.NDArray[np.int64]) -> npt.NDArray[np.int64] | None:
    """Permutation sorting rows by (meter, start), or None when they already are."""
    if len(codes) < 2:
        return None
    dc = np.diff(codes)
    if (dc > 0).all() or ((dc >= 0).all() and (np.diff(start)[dc == 0] > 0).all()):
        return None
    return np.lexsort((start, codes))


def _interval_ends(tk_ts: npt.NDArray[np.int64], tk_ints: npt.NDArray[np.int64], plan: ColumnPlan,
                   hi_us: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(start, end) per row in µs. A length column is multiplied out only where the end stays
    within `hi_us`; elsewhere the end is just past both the start and `hi_us` (so it is
    reported as outside the window), and twelve digits of minutes can never overflow int64
    into a plausible date."""
    start = tk_ts[:, plan.slot("interval_start")]
    length_col = plan.length_column
    if length_col == "interval_end":
        return start, tk_ts[:, plan.slot("interval_end")]
    unit = 60_000_000 if length_col == "interval_minutes" else 1_000_000
    n = tk_ints[:, plan.slot(length_col)]
    fits = (start <= hi_us) & (n <= (hi_us - np.minimum(start, hi_us)) // unit)
    return start, np.where(fits, start + np.where(fits, n, 0) * unit, np.maximum(start, hi_us) + 1)


def _plausibility(plan: ColumnPlan, tk_line: npt.NDArray[np.int64], start: npt.NDArray[np.int64],
                  end: npt.NDArray[np.int64], floats: npt.NDArray[np.float64],
                  err: npt.NDArray[np.uint8], ok: npt.NDArray[np.bool_], window: TimeWindow,
                  problems: Problems) -> npt.NDArray[np.bool_]:
    """Rows (among `ok`) inside the time window whose energy and power fit MAX_POWER_W and
    whose power factor and frequency are in their ranges (`err`: the tokenizer's field codes)."""
    lo, hi = window.us
    widen = "; if the data is real, widen the window (wattrail readings import --not-before / --not-after)"
    outside = ok & ((start < lo) | (start > hi))
    late = ok & ~outside & (end > hi)
    for r in np.flatnonzero(outside):
        problems.add(int(tk_line[r]), f"interval_start {iso(_dt(int(start[r])))} is outside the "
                                      f"accepted time window {window}{widen}", "interval_start")
    length_col = plan.length_column
    for r in np.flatnonzero(late):
        problems.add(int(tk_line[r]), f"{length_col} gives an interval that ends after "
                                      f"{iso(window.not_after)}, the end of the accepted time "
                                      f"window {window}{widen}", length_col)
    ok = ok & ~outside & ~late
    for name in _ENERGY:
        if name not in plan.names:
            continue
        col = floats[:, plan.slot(name)]
        limit = max_interval_wh(end - start)
        over = ok & (col > limit)
        for r in np.flatnonzero(over):
            minutes = (int(end[r]) - int(start[r])) / 60e6
            problems.add(int(tk_line[r]), f"{name} ({float(col[r])!r} Wh) is more than "
                                          f"{MAX_POWER_W / 1e6:g} MW allows in its {minutes:g}-minute "
                                          f"interval (at most {float(limit[r]):.10g} Wh); "
                                          "check the unit (Wh, not mWh) and the interval", name)
        ok &= ~over
    for name in _POWER:
        if name not in plan.names:
            continue
        col = floats[:, plan.slot(name)]
        over = ok & (np.abs(col) > MAX_POWER_W)
        for r in np.flatnonzero(over):
            problems.add(int(tk_line[r]), f"{name} ({float(col[r])!r}) is beyond the "
                                          f"{MAX_POWER_W / 1e6:g} MW a meter may carry; check the "
                                          "unit (W and var, not mW)", name)
        ok &= ~over
    for name, (low, high, why) in _RANGES.items():
        if name not in plan.names:
            continue
        col = floats[:, plan.slot(name)]
        # an empty field is missing (0 in the array, E_EMPTY in err): not judged here
        given = err[:, plan.index(name)] == E_OK
        out = ok & given & ((col < low) | (col > high))
        for r in np.flatnonzero(out):
            problems.add(int(tk_line[r]), f"{name} ({float(col[r])!r}) is outside [{low:g}, "
                                          f"{high:g}]: {why}", name)
        ok &= ~out
    return ok


def _dt(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def parse_readings_csv(data: bytes, window: TimeWindow | None = None
                       ) -> tuple[ParsedReadings | None, list[Problem], int]:
    """(parsed good rows or None if the header is unusable, problems sorted by line, total).
    Intervals outside `window` (default: TimeWindow.default(), from the clock) are errors."""
    window = window or TimeWindow.default()
    problems = Problems()
    header_end, header_problems = check_header_bytes(data)
    if header_problems:
        return None, header_problems, len(header_problems)
    plan, header_problems = plan_columns(data[:header_end].decode("utf-8").lstrip("\ufeff"))
    if plan is None:
        return None, header_problems, len(header_problems)
    body = min(header_end + 1, len(data))
    tk = tokenize(np.frombuffer(data, np.uint8), body, plan.roles)
    for r in np.flatnonzero(tk.row_err == R_BLANK):
        problems.add(int(tk.line[r]), "blank line", "")
    for r in np.flatnonzero(tk.row_err == R_FIELDS):
        got = len(_line_fields(data, int(tk.line_start[r])))
        problems.add(int(tk.line[r]), f"has {got} fields, the header has {len(plan.names)}", "")
    bad = _field_problems(data, plan, tk.err, tk.line, tk.line_start, tk.floats, problems)
    bad |= tk.row_err != 0

    start, end = _interval_ends(tk.ts, tk.ints, plan, window.us[1])
    length_col = plan.length_column
    ok = ~bad
    for r in np.flatnonzero(ok & (end <= start)):
        problems.add(int(tk.line[r]), f"{length_col} gives an interval that does not end after "
                                      "interval_start", length_col)
    ok &= end > start
    for name in plan.floats():
        col = tk.floats[:, plan.slot(name)]
        neg = ok & (col < 0) & (tk.err[:, plan.index(name)] == E_OK)
        if name in _NONNEGATIVE:
            for r in np.flatnonzero(neg):
                problems.add(int(tk.line[r]), f"{name} is negative ({col[r]}); interval energy, "
                                              "voltage and current must be >= 0", name)
            ok &= ~neg
    ok = _plausibility(plan, tk.line, start, end, tk.floats, tk.err, ok, window, problems)

    keep = np.flatnonzero(ok)
    codes, meter_ids = _factorize(np.frombuffer(data, np.uint8), tk.id_start[keep],
                                  tk.id_end[keep], tk.id_hash[keep])
    s, e = start[keep], end[keep]
    order = _sort_order(codes, s)
    if order is not None:  # most files come sorted by meter and time
        keep, codes, s, e = keep[order], codes[order], s[order], e[order]
    line = tk.line[keep]
    same = codes[1:] == codes[:-1]
    for i in np.flatnonzero(same & (s[1:] < e[:-1])) + 1:
        what = "repeats" if s[i] == s[i - 1] else "overlaps"
        problems.add(int(line[i]), f"interval {what} the one on line {line[i - 1]} for meter "
                                   f"{meter_ids[codes[i]]}", "interval_start", meter_ids[codes[i]])
    optional = {}
    for name in plan.floats():
        if name != "import_wh":
            optional[name] = (tk.floats[keep, plan.slot(name)],
                              tk.err[keep, plan.index(name)] == E_EMPTY)
    bad_ids = [(k, why) for k, m in enumerate(meter_ids) if (why := _bad_meter_id(m))]
    for k, why in bad_ids:
        where = line[codes == k]
        problems.add(int(where.min()), f"meter_id {_shown(meter_ids[k])} {why} (on "
                                       f"{len(where)} row(s))", "meter_id")
    if bad_ids:  # no id PostgreSQL cannot hold goes on to the archive lookup
        return None, problems.sorted(), problems.total
    parsed = ParsedReadings(tk.rows, line, codes, meter_ids, s, e,
                            tk.floats[keep, plan.slot("import_wh")], optional)
    return parsed, problems.sorted(), problems.total
