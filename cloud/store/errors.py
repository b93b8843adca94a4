"""What can go wrong in the store, split by who has to act.

- `MigrationError`: the schema on the server and the files in the repo disagree; an operator
  decides (never auto-repaired).
- `ValidationError` and its subclasses: the input file is wrong; each carries every `Problem`
  found, with the line it is on, so the sender can fix the file in one round.
"""

from __future__ import annotations

from dataclasses import dataclass


class StoreError(Exception):
    """Base of every error cloud/store raises on purpose."""


class MigrationError(StoreError):
    """A migration cannot be applied; `version` names it."""

    def __init__(self, version: int, message: str) -> None:
        super().__init__(message)
        self.version = version


class ChecksumMismatchError(MigrationError):
    """A migration that is already applied was edited afterwards."""

    def __init__(self, version: int, name: str, recorded: str, on_disk: str) -> None:
        super().__init__(
            version,
            f"migration {version:04d} ({name}) was changed after it was applied: recorded sha256 "
            f"{recorded[:12]}..., file now {on_disk[:12]}.... Restore the file and put the change "
            "in a new migration with a higher number.",
        )
        self.name = name
        self.recorded = recorded
        self.on_disk = on_disk


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one row of an input file. `line` is 1-based, `None` when the
    problem is about the file as a whole (e.g. a missing column)."""

    line: int | None
    message: str
    where: str = ""  # e.g. "customers[12]" or the column name
    key: str | None = None  # the id involved (meter id, customer id), when there is one

    def __str__(self) -> str:
        at = f"line {self.line}" if self.line is not None else "file"
        where = f" ({self.where})" if self.where else ""
        return f"{at}{where}: {self.message}"


class ValidationError(StoreError):
    """An input file has problems; nothing from it was committed."""

    def __init__(self, path: str, problems: list[Problem], *, what: str = "file",
                 total: int | None = None) -> None:
        self.path = path
        self.problems = problems  # sorted by line; may be capped, see `total`
        self.total = len(problems) if total is None else total  # all problems found
        first = "; ".join(str(p) for p in problems[:3])
        more = f" (and {self.total - 3} more)" if self.total > 3 else ""
        super().__init__(
            f"{path}: {self.total} problem(s) in the {what}, nothing was imported: {first}{more}. "
            "Fix the file and import it again."
        )


class TopologyValidationError(ValidationError):
    """The grid file has bad or inconsistent records."""

    def __init__(self, path: str, problems: list[Problem], total: int | None = None) -> None:
        super().__init__(path, problems, what="grid file", total=total)


class ReadingsValidationError(ValidationError):
    """The historical readings CSV has bad rows."""

    def __init__(self, path: str, problems: list[Problem], total: int | None = None) -> None:
        super().__init__(path, problems, what="readings CSV", total=total)
