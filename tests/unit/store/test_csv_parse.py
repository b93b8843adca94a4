"""The historical CSV parser: values equal what Python would compute, every malformed field is
reported on its line, and the interval -> register conversion is exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.store.json_lines import element_lines
from cloud.store.readings_import.columns import MAX_COLUMNS, MAX_HEADER_BYTES, plan_columns
from cloud.store.readings_import.cumulate import to_register_series
from cloud.store.readings_import.limits import TimeWindow
from cloud.store.readings_import.parse import parse_readings_csv

HEADER = "meter_id,interval_start,interval_end,import_wh,export_wh,v_l1\n"


def _bases(export: np.ndarray) -> dict[str, np.ndarray]:
    """Stored registers of the cumulative columns: export as given, reactive ones at 0."""
    return {"export_wh": export, "import_varh": np.zeros_like(export), "export_varh": np.zeros_like(export)}


def _us(dt: datetime) -> int:
    return int(dt.timestamp()) * 1_000_000


def test_header_plan_reports_every_problem() -> None:
    plan, problems = plan_columns("Meter_ID, interval_start,import_wh,foo,import_wh")
    assert plan is None
    messages = " | ".join(p.message for p in problems)
    assert "'import_wh' appears more than once" in messages
    assert "unknown column 'foo'" in messages
    assert "exactly one of interval_end, interval_minutes, interval_seconds" in messages
    assert all(p.line == 1 for p in problems)


def test_a_wide_header_is_one_problem_and_linear() -> None:
    # 10^6 columns took longer than 90 s when each name was counted across all the others;
    # refused now with one problem before any per-column work
    plan, problems = plan_columns(",".join(f"c{i}" for i in range(10**6)))
    assert plan is None and len(problems) == 1
    assert f"1000000 columns, more than the {MAX_COLUMNS}" in problems[0].message
    # within the limit, unknown and repeated names are listed up to 20 each, the rest counted
    names = ["meter_id", "interval_start", "interval_minutes", "import_wh"]
    plan, problems = plan_columns(",".join(names + [f"x{i}" for i in range(30)] + ["v_l1"] * 30))
    assert plan is None
    messages = [p.message for p in problems]
    assert sum(m.startswith("unknown column") for m in messages) == 20
    assert "10 more unknown columns" in messages
    assert "column 'v_l1' appears more than once" in messages


@pytest.mark.parametrize(("data", "says"), [
    ("meter_id,interval_start,interval_minutes,import_wh\n".encode("utf-16"), "UTF-16"),
    ("meter_id,interval_start,interval_minutes,import_wh\n".encode("utf-16-be"), "UTF-16"),
    ("meter_id,interval_stärt,interval_minutes,import_wh\n".encode("latin-1"), "not UTF-8"),
    (b"x" * (MAX_HEADER_BYTES + 1), "longer than"),
    (b"meter_id," * 2000 + b"\n", "longer than"),
])
def test_header_bytes_that_are_not_a_csv_header_say_why(data: bytes, says: str) -> None:
    parsed, problems, total = parse_readings_csv(data + b"M1,2024-01-01T00:00:00Z,15,1\n")
    assert parsed is None and total == 1 and says in problems[0].message, problems


def test_a_utf8_bom_is_fine() -> None:
    data = "\ufeffmeter_id,interval_start,interval_minutes,import_wh\nM1,2024-01-01T00:00:00Z,15,1\n"
    parsed, problems, total = parse_readings_csv(data.encode())
    assert parsed is not None and total == 0, problems


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-02-29T23:45:00Z", datetime(2024, 2, 29, 23, 45, tzinfo=UTC)),
    ("2024-03-31 01:00:00+02:00", datetime(2024, 3, 30, 23, 0, tzinfo=UTC)),
    ("1999-12-31T23:59:59-05:30", datetime(2000, 1, 1, 5, 29, 59, tzinfo=UTC)),
])
def test_timestamps_with_offsets(text: str, expected: datetime) -> None:
    parsed, problems, _ = parse_readings_csv(
        f"meter_id,interval_start,interval_minutes,import_wh\nM1,{text},15,1\n".encode())
    assert problems == []
    assert parsed is not None and parsed.start_us[0] == _us(expected)


@pytest.mark.parametrize("bad", [
    "2023-02-29T00:00:00Z",  # not a leap year
    "2024-13-01T00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T00:00:60Z",
    "2024-01-01T00:00:00",  # no offset: ambiguous
    "2024-01-01T00:00:00+1:00", "2024/01/01T00:00:00Z", "yesterday", "2024-01-01T00:00Z",
])
def test_bad_timestamps_are_reported_on_their_line(bad: str) -> None:
    data = ("meter_id,interval_start,interval_minutes,import_wh\n"
            f"M1,2024-01-01T00:00:00Z,15,1\nM1,{bad},15,1\n")
    parsed, problems, total = parse_readings_csv(data.encode())
    assert total == 1 and problems[0].line == 3 and "not a timestamp" in problems[0].message
    assert parsed is not None and len(parsed.line) == 1  # the good row survives


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=1e12, allow_nan=False) | st.decimals(
    min_value=0, max_value=10**9, places=6, allow_nan=False).map(str))
def test_numbers_equal_python_float(value: float | str) -> None:
    text = repr(value) if isinstance(value, float) else value
    # an interval of 10,000 h, so that up to 1e12 Wh is plausible (100 MW, readings_import/limits.py)
    parsed, problems, _ = parse_readings_csv(
        f"meter_id,interval_start,interval_minutes,import_wh\nM1,2001-01-01T00:00:00Z,600000,{text}\n".encode())
    assert problems == []
    assert parsed is not None and parsed.import_wh[0] == float(text)


def test_every_field_error_class_with_line_numbers() -> None:
    rows = [
        "M1,2024-01-01T00:00:00Z,2024-01-01T00:15:00Z,10,0,230",  # 2 ok
        "M1,2024-01-01T00:15:00Z,2024-01-01T00:30:00Z,abc,0,230",  # 3 non-numeric
        "M1,2024-01-01T00:30:00Z,2024-01-01T00:45:00Z,-1,0,230",  # 4 negative
        "M1,2024-01-01T00:45:00Z,2024-01-01T00:45:00Z,1,0,230",  # 5 empty interval
        "M1,2024-01-01T01:00:00Z,2024-01-01T01:15:00Z,1,0",  # 6 field missing
        "",  # 7 blank
        "M1,2024-01-01T01:15:00Z,2024-01-01T01:30:00Z,,0,230",  # 8 empty energy
        "M1,2024-01-01T00:05:00Z,2024-01-01T00:20:00Z,1,0,230",  # 9 overlaps line 2
        "M1,2024-01-01T02:00:00Z,2024-01-01T02:15:00Z,1,0,",  # 10 ok: voltage missing
        '"M1,2024-01-01T02:15:00Z,2024-01-01T02:30:00Z,1,0,1',  # 11 bad quote
        "M1,2024-01-01T02:30:00Z,2024-01-01T02:45:00Z,1,nan,1",  # 12 nan is not a number
    ]
    parsed, problems, total = parse_readings_csv((HEADER + "\n".join(rows) + "\n").encode())
    got = {(p.line, p.where) for p in problems}
    assert got == {(3, "import_wh"), (4, "import_wh"), (5, "interval_end"), (6, ""), (7, ""),
                   (8, "import_wh"), (9, "interval_start"), (11, ""), (11, "meter_id"),
                   (12, "export_wh")}
    assert total == len(problems)
    assert parsed is not None and sorted(parsed.line.tolist()) == [2, 9, 10]


def test_register_series_is_exact_and_marks_gaps() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    q = timedelta(minutes=15)
    lines = [HEADER.rstrip("\n")]
    # M2 first in the file and out of order; M1 has a gap between 00:30 and 01:00
    for mid, k, wh in [("M2", 1, 0.3), ("M2", 0, 0.1), ("M1", 0, 1.1), ("M1", 1, 2.2), ("M1", 4, 3.3)]:
        s, e = ((t0 + j * q).isoformat().replace("+00:00", "Z") for j in (k, k + 1))
        lines.append(f"{mid},{s},{e},{wh},0.5,230")
    parsed, problems, _ = parse_readings_csv(("\n".join(lines) + "\n").encode())
    assert problems == [] and parsed is not None and parsed.meter_ids == ["M1", "M2"]
    s = to_register_series(parsed, np.array([1000.0, 0.0]), _bases(np.array([7.0, 0.0])),
                           np.array([False, True]))
    got = [(parsed.meter_ids[c], (t - _us(t0)) // 900_000_000, w) for c, t, w in
           zip(s.meter_code, s.ts_us, s.import_wh, strict=True)]
    assert got == [("M1", 0, 1000.0), ("M1", 1, 1001.1), ("M1", 2, 1003.3), ("M1", 4, 1003.3),
                   ("M1", 5, 1006.6), ("M2", 1, 0.1), ("M2", 2, 0.4)]
    exp, _ = s.values["export_wh"]
    assert exp[:5].tolist() == [7.0, 7.5, 8.0, 8.0, 8.5]
    v, missing = s.values["v_l1"]
    assert missing.tolist() == [True, False, False, True, False, False, False]
    assert v[~missing].tolist() == [230.0] * 5


def test_element_lines_finds_each_record() -> None:
    text = '{"a": 1,\n "xs": [\n  {"k": 1},\n\n  {"k": [2,\n 3]}, 4\n ], "ys": []}'
    assert element_lines(text) == {"xs": [3, 5, 6], "ys": []}


def test_offset_conversion_matches_datetime() -> None:
    tz = timezone(timedelta(hours=-3, minutes=-30))
    dt = datetime(2031, 7, 4, 12, 0, 5, tzinfo=tz)
    parsed, _, _ = parse_readings_csv(
        f"meter_id,interval_start,interval_seconds,import_wh\nM1,{dt.isoformat()},900,1\n".encode(),
        TimeWindow.default(now=datetime(2031, 7, 4, tzinfo=UTC)))  # a date in the future
    assert parsed is not None and parsed.start_us[0] == _us(dt) and parsed.end_us[0] == _us(dt) + 900_000_000


_HEAD = b"meter_id,interval_start,interval_minutes,import_wh\n"


@pytest.mark.parametrize(("row", "says"), [
    (b"M\x001,2024-01-01T00:00:00Z,15,1", "holds a control character"),
    ("Mü1,2024-01-01T00:00:00Z,15,1".encode("latin-1"), "is not UTF-8 text"),
    (b"M" * 201 + b",2024-01-01T00:00:00Z,15,1", "longer than 200 characters"),
    (b"M1,2024-01-01T00:00:00Z,-15,1", "must be a whole number of minutes, 1 or more"),
    (b"M1,2024-01-01T00:00:00Z,99999999999,1", "ends after"),
    (b"M1,2024-01-01T00:00:00Z,15,0." + b"1" * 200_000, "longer than 65536 bytes"),
])
def test_rows_that_once_raised_are_problems_on_their_line(row: bytes, says: str) -> None:
    _parsed, problems, total = parse_readings_csv(_HEAD + row + b"\n")
    assert total == 1 and problems[0].line == 2 and says in problems[0].message, problems
