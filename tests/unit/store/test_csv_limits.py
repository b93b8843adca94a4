"""The historical import's plausible-value windows (cloud/store/readings_import/limits.py): energy per
interval, registers, infinite numbers and the time window are errors on their line, and the
register series refuses input that was not checked. Issue 2/8, items 5 and 6."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from cloud.store.readings_import.cumulate import register_problems, to_register_series
from cloud.store.readings_import.limits import MAX_REGISTER_WH, TimeWindow
from cloud.store.readings_import.parse import parse_readings_csv

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
WINDOW = TimeWindow.default(now=NOW)  # 2000-01-01 .. 2024-06-02T12:00Z
HEADER = "meter_id,interval_start,interval_minutes,import_wh,export_wh,v_l1\n"
GOOD = "M1,2024-06-01T00:00:00Z,15,1,0,230\n"  # line 2 of every file below


def _bases(export: np.ndarray) -> dict[str, np.ndarray]:
    """Stored registers of the cumulative columns: export as given, reactive ones at 0."""
    return {"export_wh": export, "import_varh": np.zeros_like(export), "export_varh": np.zeros_like(export)}


def _parse(*rows: str, window: TimeWindow = WINDOW) -> tuple[list[int], list[str], list[int]]:
    """(good lines kept, problem messages, problem lines)."""
    parsed, problems, total = parse_readings_csv((HEADER + GOOD + "".join(rows)).encode(), window)
    assert parsed is not None and total == len(problems)
    return sorted(parsed.line.tolist()), [p.message for p in problems], [p.line or 0 for p in problems]


@pytest.mark.parametrize(("row", "column", "says"), [
    ("M1,2024-06-01T00:15:00Z,15,5e15,0,230", "import_wh", "more than 100 MW"),
    ("M1,2024-06-01T00:15:00Z,15,1e308,0,230", "import_wh", "more than 100 MW"),
    ("M1,2024-06-01T00:15:00Z,15,25000000.001,0,230", "import_wh", "at most 25000000 Wh"),
    ("M1,2024-06-01T00:15:00Z,1,1666667,0,230", "import_wh", "at most 1666666.667 Wh"),
    ("M1,2024-06-01T00:15:00Z,15,0,5e15,230", "export_wh", "more than 100 MW"),
    ("M1,2024-06-01T00:15:00Z,15," + "9" * 5000 + ",0,230", "import_wh", "overflows to infinity"),
    ("M1,2024-06-01T00:15:00Z,15,1e309,0,230", "import_wh", "overflows to infinity"),
    ("M1,2024-06-01T00:15:00Z,15,1,0,1e309", "v_l1", "overflows to infinity"),
], ids=["5e15", "1e308", "25MWh+1mWh", "1min", "export", "5000-digits", "1e309", "inf-voltage"])
def test_implausible_numbers_are_errors_on_their_line(row: str, column: str, says: str) -> None:
    parsed, problems, total = parse_readings_csv((HEADER + GOOD + row + "\n").encode(), WINDOW)
    assert total == 1 and problems[0].line == 3 and problems[0].where == column, problems
    assert says in problems[0].message and len(problems[0].message) < 400  # a long number is cut
    assert parsed is not None and parsed.line.tolist() == [2]


def test_energy_bound_is_100_mw_times_the_interval() -> None:
    lines, messages, at = _parse("M1,2024-06-01T00:15:00Z,15,25000000,25e6,230\n",  # exactly 100 MW
                                 "M1,2024-06-01T00:30:00Z,15,5e15,0,230\n",
                                 "M1,2024-06-01T00:45:00Z,15,5e15,0,230\n")
    assert lines == [2, 3] and at == [4, 5], messages


@pytest.mark.parametrize(("start", "minutes", "column"), [
    ("9999-01-01T00:00:00Z", "15", "interval_start"),
    ("0001-01-01T00:00:00Z", "15", "interval_start"),
    ("1969-12-31T23:45:00Z", "15", "interval_start"),
    ("1999-12-31T23:59:59Z", "15", "interval_start"),
    ("2024-06-02T12:00:01Z", "15", "interval_start"),
    ("2024-06-02T11:50:00Z", "15", "interval_minutes"),  # ends 5 minutes after now + 1 day
    ("2024-06-01T00:15:00Z", "999999999999", "interval_minutes"),  # * 60e6 µs overflows int64
])
def test_intervals_outside_the_time_window_are_errors(start: str, minutes: str, column: str) -> None:
    parsed, problems, total = parse_readings_csv(
        (HEADER + GOOD + f"M1,{start},{minutes},1,0,230\n").encode(), WINDOW)
    assert total == 1 and problems[0].line == 3 and problems[0].where == column, problems
    assert "2000-01-01T00:00:00Z .. 2024-06-02T12:00:00Z" in problems[0].message
    assert "--not-before / --not-after" in problems[0].message
    assert parsed is not None and parsed.line.tolist() == [2]


def test_window_edges_are_inclusive_and_the_window_can_be_widened() -> None:
    lines, messages, _ = _parse("M1,2000-01-01T00:00:00Z,15,1,0,230\n",
                                "M1,2024-06-02T11:45:00Z,15,1,0,230\n")  # ends at now + 1 day
    assert lines == [2, 3, 4] and messages == []
    wide = TimeWindow(datetime(1960, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC))
    lines, messages, _ = _parse("M1,1969-12-31T23:45:00Z,15,1,0,230\n",
                                "M1,2029-12-31T23:45:00Z,15,1,0,230\n", window=wide)
    assert lines == [2, 3, 4] and messages == []
    with pytest.raises(ValueError, match="widest window"):
        TimeWindow(datetime(1, 1, 1, tzinfo=UTC), NOW)
    with pytest.raises(ValueError, match="widest window"):
        TimeWindow.default(not_after=datetime(9999, 12, 31, tzinfo=UTC))
    with pytest.raises(ValueError, match="must be before"):
        TimeWindow.default(now=datetime(1999, 1, 1, tzinfo=UTC))


def _year_rows(meter: str, years: int, wh: float) -> str:
    """Back-to-back intervals of 365 days (100 MW x 8760 h = 8.76e11 Wh is the interval bound)."""
    return "".join(f"{meter},{2001 + k}-01-01T00:00:00Z,{365 * 24 * 60},{wh},0,\n" for k in range(years))


def test_a_register_above_the_bound_is_an_error_on_the_line_that_passes_it() -> None:
    data = (HEADER + _year_rows("M1", 3, 4e11) + _year_rows("M2", 2, 8e11)).encode()
    parsed, _, total = parse_readings_csv(data, WINDOW)
    assert parsed is not None and total == 0  # each interval is plausible on its own
    got = register_problems(parsed, np.zeros(2), _bases(np.zeros(2)))
    assert [(p.line, p.key, p.where) for p in got] == [(4, "M1", "import_wh"), (6, "M2", "import_wh")]
    assert "1.2e+12 Wh" in got[0].message and f"{MAX_REGISTER_WH:g} Wh" in got[0].message
    # a stored register close to the bound: the file's first interval already passes it
    near = register_problems(parsed, np.array([MAX_REGISTER_WH - 1.0, 0.0]), _bases(np.zeros(2)))
    assert [(p.line, p.key) for p in near] == [(2, "M1"), (6, "M2")]
    with pytest.raises(ValueError, match="register_problems"):
        to_register_series(parsed, np.zeros(2), _bases(np.zeros(2)), np.zeros(2, bool))


MEANS = "meter_id,interval_start,interval_minutes,import_wh,p_w,q_var,i_n,pf,freq_hz\n"


@pytest.mark.parametrize(("fields", "column", "says"), [
    ("1,1e9,0,0,1,50", "p_w", "beyond the 100 MW"),
    ("1,0,-1e9,0,1,50", "q_var", "beyond the 100 MW"),
    ("1,0,0,-0.1,1,50", "i_n", "negative"),
    ("1,0,0,0,1.01,50", "pf", "[-1, 1]"),
    ("1,0,0,0,-1.5,50", "pf", "[-1, 1]"),
    ("1,0,0,0,1,50000", "freq_hz", "not mHz"),
    ("1,0,0,0,1,0", "freq_hz", "[40, 70]"),
], ids=["p_w", "q_var", "i_n", "pf-high", "pf-low", "mHz", "zero-Hz"])
def test_mean_quantities_outside_their_range_are_errors(fields: str, column: str, says: str) -> None:
    good = "M1,2024-06-01T00:00:00Z,15,1,-2000,-300,0.5,-1,49.9\n"  # signed powers, pf -1: fine
    empty = "M1,2024-06-01T00:30:00Z,15,1,,,,,\n"  # all missing: not judged
    parsed, problems, total = parse_readings_csv(
        (MEANS + good + f"M1,2024-06-01T00:15:00Z,15,{fields}\n" + empty).encode(), WINDOW)
    assert parsed is not None and parsed.line.tolist() == [2, 4], problems
    assert total == 1 and problems[0].line == 3 and problems[0].where == column
    assert says in problems[0].message
    pf, missing = parsed.optional["pf"]
    assert pf[0] == -1.0 and missing.tolist() == [False, True]
