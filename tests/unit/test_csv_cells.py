"""CSV cells the API writes: text a spreadsheet would run as a formula is defused; numbers,
including negative ones, stay numbers."""

from __future__ import annotations

import pytest

from cloud.api.tabular import _cell


@pytest.mark.parametrize(("value", "cell"), [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
    ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
    ("MTR-000001", "MTR-000001"), (-4.5, -4.5), (0, 0), (None, ""), (True, "true"),
    ({"a": "=1"}, '{"a":"=1"}'),
])
def test_cells(value: object, cell: object) -> None:
    assert _cell(value) == cell
