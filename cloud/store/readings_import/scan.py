"""Tokenise and convert the historical readings CSV in one compiled pass over the bytes.

Why a Numba kernel: the import must sustain 500,000 rows/s on two cores, and the server's COPY
alone takes most of that budget; Python's csv module plus float() per field is ~10x too slow
and numpy's loadtxt still spends ~1.5 s per 2M rows. The kernel keeps to plain arrays and
scalars; `tokenize` is the checked public wrapper.

What it accepts (docs/historical-import.md): comma-separated fields, optionally wrapped in
double quotes (no quotes inside), spaces around a field ignored, LF or CRLF line ends.
- timestamps: `YYYY-MM-DD[T ]HH:MM:SS` then `Z` or `+HH:MM`/`-HH:MM` (an offset is required);
- numbers: `[+-]digits[.digits][(e|E)[+-]digits]`; no nan/inf;
- integers: `[+]digits`.
A number with more than 15 significant digits or a large exponent is marked E_SLOW and
converted by Python's float() afterwards, so every value equals what float() would give.

Compiled and as plain Python (NUMBA_DISABLE_JIT=1, or each function's `.py_func`) the kernel
must give the same result on every input; tests/unit/store/test_csv_kernel_modes.py runs both
on random and mutated bytes. Integer arithmetic on a raw uint8 is where the two differ (Numba
widens it to int64, NumPy keeps uint8 and wraps), so bytes become numbers only in `_digit`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit

from cloud.store.readings_import.columns import ROLE_FLOAT, ROLE_ID, ROLE_INT, ROLE_TS

# per-field error codes
E_OK, E_EMPTY, E_NUMBER, E_TIMESTAMP, E_SLOW, E_QUOTE = 0, 1, 2, 3, 4, 5
# per-row error codes
R_OK, R_FIELDS, R_BLANK = 0, 1, 2

_POW10 = np.array([10.0**k for k in range(23)])  # exact in float64 up to 1e22


@njit(cache=True, inline="always")
def _days_from_civil(y: int, m: int, d: int) -> int:
    # Howard Hinnant's algorithm: days since 1970-01-01 in the proleptic Gregorian calendar
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True, inline="always")
def _digit(c: np.uint8) -> int:
    """The value of an ASCII digit byte, else -1. The one place a byte becomes a number: both
    bounds are compared on the byte itself, then it is widened with int() before any
    arithmetic. `c - 48` on the raw byte is typed differently by Numba (int64: '/' gives -1)
    and by NumPy scalars (uint8: '/' wraps to 255, and 2024 overflows), so a one-sided check
    on it silently accepts '.' or '/' as a digit in one mode only."""
    return int(c) - 48 if 48 <= c <= 57 else -1


@njit(cache=True)
def _digits(buf: npt.NDArray[np.uint8], i: int, n: int) -> int:
    v = 0
    for k in range(i, i + n):
        c = _digit(buf[k])
        if c < 0:
            return -1
        v = v * 10 + c
    return v


@njit(cache=True)
def _parse_ts(buf: npt.NDArray[np.uint8], s: int, e: int) -> tuple[int, int]:
    n = e - s
    if n != 20 and n != 25:
        return 0, E_TIMESTAMP
    if buf[s + 4] != 45 or buf[s + 7] != 45 or (buf[s + 10] != 84 and buf[s + 10] != 32) \
            or buf[s + 13] != 58 or buf[s + 16] != 58:
        return 0, E_TIMESTAMP
    y, mo, d = _digits(buf, s, 4), _digits(buf, s + 5, 2), _digits(buf, s + 8, 2)
    hh, mi, ss = _digits(buf, s + 11, 2), _digits(buf, s + 14, 2), _digits(buf, s + 17, 2)
    if y < 1 or mo < 1 or mo > 12 or d < 1 or hh < 0 or hh > 23 or mi < 0 or mi > 59 \
            or ss < 0 or ss > 59:
        return 0, E_TIMESTAMP
    leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
    mdays = 29 if (mo == 2 and leap) else (28 if mo == 2 else (30 if mo in (4, 6, 9, 11) else 31))
    if d > mdays:
        return 0, E_TIMESTAMP
    off = 0
    if n == 20:
        if buf[s + 19] != 90:  # 'Z'
            return 0, E_TIMESTAMP
    else:
        sign = buf[s + 19]
        oh, om = _digits(buf, s + 20, 2), _digits(buf, s + 23, 2)
        if (sign != 43 and sign != 45) or buf[s + 22] != 58 or oh < 0 or oh > 23 or om < 0 or om > 59:
            return 0, E_TIMESTAMP
        off = (oh * 60 + om) * 60 * (1 if sign == 43 else -1)
    secs = _days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss - off
    return secs * 1_000_000, E_OK


@njit(cache=True)
def _parse_float(buf: npt.NDArray[np.uint8], s: int, e: int, pow10: npt.NDArray[np.float64]
                 ) -> tuple[float, int]:
    i, neg = s, False
    if buf[i] == 43 or buf[i] == 45:
        neg = buf[i] == 45
        i += 1
    mant, nd, exp10, digits, slow = 0, 0, 0, 0, False
    while i < e and _digit(buf[i]) >= 0:
        digits += 1
        if nd < 18:
            mant = mant * 10 + _digit(buf[i])
            nd += mant > 0
        else:
            slow = True
        i += 1
    if i < e and buf[i] == 46:  # '.'
        i += 1
        while i < e and _digit(buf[i]) >= 0:
            digits += 1
            if nd < 18:
                mant = mant * 10 + _digit(buf[i])
                nd += mant > 0
                exp10 -= 1
            else:
                slow = True
            i += 1
    if digits == 0:
        return 0.0, E_NUMBER
    if i < e and (buf[i] == 101 or buf[i] == 69):  # e / E
        i += 1
        eneg = False
        if i < e and (buf[i] == 43 or buf[i] == 45):
            eneg = buf[i] == 45
            i += 1
        if i == e:
            return 0.0, E_NUMBER
        ev = 0
        while i < e and _digit(buf[i]) >= 0:
            if ev < 100000:
                ev = ev * 10 + _digit(buf[i])
            i += 1
        exp10 += -ev if eneg else ev
    if i != e:
        return 0.0, E_NUMBER
    if slow or nd > 15 or exp10 > 22 or exp10 < -22:
        return 0.0, E_SLOW
    # Clinger's fast path: mantissa and power of ten are exact doubles, so one correctly
    # rounded multiply or divide gives exactly what strtod/float() gives.
    v = float(mant) * pow10[exp10] if exp10 >= 0 else float(mant) / pow10[-exp10]
    return (-v if neg else v), E_OK


@njit(cache=True)
def _parse_int(buf: npt.NDArray[np.uint8], s: int, e: int) -> tuple[int, int]:
    i = s + (buf[s] == 43)
    if i == e or e - i > 12:
        return 0, E_NUMBER
    v = _digits(buf, i, e - i)
    return (v, E_OK) if v >= 0 else (0, E_NUMBER)


# rows, then Tokens' arrays in field order (line ... ints), each max_rows long
_TokenArrays = tuple[int, npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8],
                     npt.NDArray[np.uint8], npt.NDArray[np.int64], npt.NDArray[np.int64],
                     npt.NDArray[np.uint64], npt.NDArray[np.int64], npt.NDArray[np.float64],
                     npt.NDArray[np.int64]]


@njit(cache=True)
def _tokenize(buf: npt.NDArray[np.uint8], pos: int, roles: npt.NDArray[np.int64],
              slots: npt.NDArray[np.int64], max_rows: int, n_ts: int, n_fl: int, n_int: int,
              pow10: npt.NDArray[np.float64]) -> _TokenArrays:
    ncol = roles.shape[0]
    n = buf.shape[0]
    line = np.zeros(max_rows, np.int64)
    row_err = np.zeros(max_rows, np.uint8)
    err = np.zeros((max_rows, ncol), np.uint8)
    id_s = np.zeros(max_rows, np.int64)
    id_e = np.zeros(max_rows, np.int64)
    id_h = np.zeros(max_rows, np.uint64)
    ts = np.zeros((max_rows, n_ts), np.int64)
    fl = np.zeros((max_rows, n_fl), np.float64)
    it = np.zeros((max_rows, n_int), np.int64)
    line_start = np.zeros(max_rows, np.int64)  # to re-read a bad line for its message
    row, lineno = 0, 2
    while pos < n:
        line[row] = lineno
        line_start[row] = pos
        eol = pos
        while eol < n and buf[eol] != 10:
            eol += 1
        end = eol - 1 if (eol > pos and buf[eol - 1] == 13) else eol  # drop CR of CRLF
        if end == pos:
            row_err[row] = R_BLANK
        else:
            col, p = 0, pos
            while True:
                q = p
                bad = False
                while q < end and buf[q] == 32:
                    q += 1
                if q < end and buf[q] == 34:  # a quoted field: up to the next quote
                    q += 1
                    s = q
                    while q < end and buf[q] != 34:
                        q += 1
                    e = q
                    bad = q >= end  # unterminated
                    q += 1
                    while q < end and buf[q] == 32:
                        q += 1
                    if q < end and buf[q] != 44:  # junk after the closing quote
                        bad = True
                        while q < end and buf[q] != 44:
                            q += 1
                else:
                    s = q
                    while q < end and buf[q] != 44:
                        q += 1
                    e = q
                if bad and col < ncol:
                    err[row, col] = E_QUOTE
                while s < e and buf[s] == 32:
                    s += 1
                while e > s and buf[e - 1] == 32:
                    e -= 1
                if col < ncol and err[row, col] == E_OK:
                    role, slot = roles[col], slots[col]
                    if s == e:
                        err[row, col] = E_EMPTY
                    elif role == ROLE_ID:
                        id_s[row], id_e[row] = s, e
                        h = np.uint64(14695981039346656037)  # FNV-1a, to group rows by id fast
                        for k in range(s, e):
                            if buf[k] == 34:
                                err[row, col] = E_QUOTE
                            h = (h ^ np.uint64(buf[k])) * np.uint64(1099511628211)
                        id_h[row] = h
                    elif role == ROLE_TS:
                        ts[row, slot], err[row, col] = _parse_ts(buf, s, e)
                    elif role == ROLE_FLOAT:
                        fl[row, slot], err[row, col] = _parse_float(buf, s, e, pow10)
                    else:
                        it[row, slot], err[row, col] = _parse_int(buf, s, e)
                col += 1
                if q >= end:
                    break
                p = q + 1
            if col != ncol:
                row_err[row] = R_FIELDS
        row += 1
        lineno += 1
        pos = eol + 1
    return row, line, line_start, row_err, err, id_s, id_e, id_h, ts, fl, it


@njit(cache=True)
def _same_ids(buf: npt.NDArray[np.uint8], id_s: npt.NDArray[np.int64], id_e: npt.NDArray[np.int64],
              codes: npt.NDArray[np.int64], rep: npt.NDArray[np.int64]) -> bool:
    for r in range(id_s.shape[0]):
        o = rep[codes[r]]
        n = id_e[r] - id_s[r]
        if n != id_e[o] - id_s[o]:
            return False
        for k in range(n):
            if buf[id_s[r] + k] != buf[id_s[o] + k]:
                return False
    return True


def same_ids(buf: npt.NDArray[np.uint8], id_s: npt.NDArray[np.int64], id_e: npt.NDArray[np.int64],
             codes: npt.NDArray[np.int64], rep: npt.NDArray[np.int64]) -> bool:
    """True when every row's id bytes equal those of row `rep[codes[row]]`: proves a grouping
    made from hashes has no collision."""
    return bool(_same_ids(buf, id_s, id_e, codes, rep))


@dataclass(frozen=True, slots=True)
class Tokens:
    """Per data row: its 1-based line, row/field error codes and converted values. Values
    where the error code is not E_OK are meaningless."""

    rows: int
    line: npt.NDArray[np.int64]
    line_start: npt.NDArray[np.int64]  # byte offset of each row's line
    row_err: npt.NDArray[np.uint8]
    err: npt.NDArray[np.uint8]  # (rows, columns)
    id_start: npt.NDArray[np.int64]
    id_end: npt.NDArray[np.int64]
    id_hash: npt.NDArray[np.uint64]  # FNV-1a of the id bytes; same_ids() confirms a grouping
    ts: npt.NDArray[np.int64]  # (rows, timestamp columns), µs since the Unix epoch
    floats: npt.NDArray[np.float64]  # (rows, float columns)
    ints: npt.NDArray[np.int64]  # (rows, integer columns)


def tokenize(buf: npt.NDArray[np.uint8], body_start: int, roles: list[int]) -> Tokens:
    """Parse the data lines of `buf` (uint8, the whole file) from byte `body_start` on."""
    if buf.dtype != np.uint8 or buf.ndim != 1:
        raise TypeError(f"buf must be a 1-D uint8 array (np.frombuffer(data, np.uint8)), got "
                        f"{buf.dtype} with {buf.ndim} dimensions")
    if any(r not in (ROLE_ID, ROLE_TS, ROLE_FLOAT, ROLE_INT) for r in roles):
        raise ValueError(f"roles must come from columns.py (ROLE_*), got {roles}")
    r = np.asarray(roles, np.int64)
    slots = np.array([sum(1 for x in roles[:i] if x == roles[i]) for i in range(len(roles))], np.int64)
    # one row per newline, plus one for a last line without its newline
    max_rows = int(np.count_nonzero(buf[body_start:] == 10)) + 1
    # FNV-1a multiplies modulo 2**64 by design: compiled code wraps silently, NumPy scalars (the
    # same kernel as Python: NUMBA_DISABLE_JIT, .py_func) warn; both give the same hash.
    with np.errstate(over="ignore"):
        rows, line, line_start, row_err, err, id_s, id_e, id_h, ts, fl, it = _tokenize(
            buf, body_start, r, slots, max_rows, int((r == ROLE_TS).sum()),
            int((r == ROLE_FLOAT).sum()), int((r == ROLE_INT).sum()), _POW10)
    n = int(rows)
    return Tokens(n, line[:n], line_start[:n], row_err[:n], err[:n], id_s[:n], id_e[:n],
                  id_h[:n], ts[:n], fl[:n], it[:n])
