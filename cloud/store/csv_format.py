"""The historical readings CSV: which header names mean what (docs/historical-import.md).

Pure code: takes the header line, returns a column plan or the problems with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloud.store.errors import Problem

# Roles the tokenizer knows (csv_kernel.py uses the same numbers).
ROLE_ID, ROLE_TS, ROLE_FLOAT, ROLE_INT = 1, 2, 3, 4

REQUIRED = ("meter_id", "interval_start", "import_wh")
LENGTH_COLUMNS = ("interval_end", "interval_minutes", "interval_seconds")
# Optional per-interval values, stored on the reading at the interval's end. Voltages and
# currents are the interval's mean RMS values.
OPTIONAL_FLOATS = ("export_wh", "v_l1", "v_l2", "v_l3", "i_l1", "i_l2", "i_l3")
_ROLES = {"meter_id": ROLE_ID, "interval_start": ROLE_TS, "interval_end": ROLE_TS,
          "interval_minutes": ROLE_INT, "interval_seconds": ROLE_INT, "import_wh": ROLE_FLOAT,
          **{name: ROLE_FLOAT for name in OPTIONAL_FLOATS}}
KNOWN = tuple(_ROLES)


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    names: tuple[str, ...]  # normalised header names, in file order

    def index(self, name: str) -> int:
        return self.names.index(name)

    @property
    def roles(self) -> list[int]:
        return [_ROLES[n] for n in self.names]

    @property
    def length_column(self) -> str:
        return next(n for n in self.names if n in LENGTH_COLUMNS)

    def slot(self, name: str) -> int:
        """Position of `name` among the columns of its role (the tokenizer's output column)."""
        role = _ROLES[name]
        return [n for n in self.names if _ROLES[n] == role].index(name)

    def floats(self) -> list[str]:
        return [n for n in self.names if _ROLES[n] == ROLE_FLOAT]


def plan_columns(header: str) -> tuple[ColumnPlan | None, list[Problem]]:
    """Map a header line to a plan; names are case-insensitive and trimmed."""
    names = tuple(h.strip().strip('"').strip().lower() for h in header.rstrip("\r\n").split(","))
    problems: list[Problem] = []
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem(1, f"column {name!r} appears more than once", "header"))
    for name in names:
        if name not in _ROLES:
            problems.append(Problem(1, f"unknown column {name!r}; known columns: {', '.join(KNOWN)}",
                                    "header"))
    for name in REQUIRED:
        if name not in names:
            problems.append(Problem(1, f"missing required column {name!r}", "header"))
    lengths = [n for n in LENGTH_COLUMNS if n in names]
    if len(lengths) != 1:
        problems.append(Problem(1, "give exactly one of interval_end, interval_minutes, "
                                   f"interval_seconds (found {lengths or 'none'})", "header"))
    return (None if problems else ColumnPlan(names)), problems
