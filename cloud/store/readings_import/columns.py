"""The historical readings CSV: which header names mean what (docs/historical-import.md).

Pure code: takes the header line, returns a column plan or the problems with it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from cloud.store.errors import Problem
from protocols.reading import MEASURED_FIELDS, REGISTERS

# Roles the tokenizer knows (scan.py uses the same numbers).
ROLE_ID, ROLE_TS, ROLE_FLOAT, ROLE_INT = 1, 2, 3, 4

REQUIRED = ("meter_id", "interval_start", "import_wh")
LENGTH_COLUMNS = ("interval_end", "interval_minutes", "interval_seconds")
# Optional per-interval values, stored on the reading at the interval's end. Voltages and
# currents are the interval's mean RMS values; p_w and q_var its mean active and reactive
# power (signed: positive is import), pf its mean power factor, freq_hz its mean frequency.
OPTIONAL_FLOATS = tuple(f for f in MEASURED_FIELDS if f != "import_wh")
# interval energies the import cumulates into registers, like import_wh (cumulate.py)
CUMULATIVE = tuple(f for f in REGISTERS if f != "import_wh")
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


MAX_COLUMNS = 64  # the format knows 18; a wider header is another file, refused before parsing
MAX_HEADER_BYTES = 16 * 1024
_MAX_NAMED = 20  # unknown or repeated names listed one by one; the rest are counted


def check_header_bytes(data: bytes) -> tuple[int, list[Problem]]:
    """Where the header line ends (index of its newline, or len(data)) and what makes it
    unusable as bytes: too long, or not UTF-8 text. Linear, and reads at most
    MAX_HEADER_BYTES + 1 bytes, so a 1 GB line costs nothing."""
    end = data.find(b"\n", 0, MAX_HEADER_BYTES + 1)
    if end < 0:
        if len(data) > MAX_HEADER_BYTES:
            return len(data), [Problem(1, f"the header line is longer than {MAX_HEADER_BYTES} "
                                          "bytes; is this a readings CSV with one header line?",
                                       "header")]
        end = len(data)
    head = data[:end]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head:
        return end, [Problem(1, "the file is UTF-16 (or holds NUL bytes); save it as UTF-8 "
                                "(plain or with a BOM)", "header")]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return end, [Problem(1, f"the header is not UTF-8 (byte {exc.start}); save the file as "
                                "UTF-8, e.g. `iconv -f latin1 -t utf-8`", "header")]
    return end, []


def plan_columns(header: str) -> tuple[ColumnPlan | None, list[Problem]]:
    """Map a header line to a plan; names are case-insensitive and trimmed. Linear in the
    header's length; at most MAX_COLUMNS columns."""
    names = tuple(h.strip().strip('"').strip().lower() for h in header.rstrip("\r\n").split(","))
    if len(names) > MAX_COLUMNS:
        return None, [Problem(1, f"the header has {len(names)} columns, more than the "
                                 f"{MAX_COLUMNS} a readings CSV may have; known columns: "
                                 f"{', '.join(KNOWN)}", "header")]
    problems: list[Problem] = []
    counts = Counter(names)
    repeated = sorted(n for n, c in counts.items() if c > 1)
    for name in repeated[:_MAX_NAMED]:
        problems.append(Problem(1, f"column {name!r} appears more than once", "header"))
    if len(repeated) > _MAX_NAMED:
        problems.append(Problem(1, f"{len(repeated) - _MAX_NAMED} more repeated columns", "header"))
    unknown = [n for n in names if n not in _ROLES]
    for name in unknown[:_MAX_NAMED]:
        problems.append(Problem(1, f"unknown column {name!r}; known columns: {', '.join(KNOWN)}",
                                "header"))
    if len(unknown) > _MAX_NAMED:
        problems.append(Problem(1, f"{len(unknown) - _MAX_NAMED} more unknown columns", "header"))
    for name in REQUIRED:
        if name not in counts:
            problems.append(Problem(1, f"missing required column {name!r}", "header"))
    lengths = [n for n in LENGTH_COLUMNS if n in counts]
    if len(lengths) != 1:
        problems.append(Problem(1, "give exactly one of interval_end, interval_minutes, "
                                   f"interval_seconds (found {lengths or 'none'})", "header"))
    return (None if problems else ColumnPlan(names)), problems
