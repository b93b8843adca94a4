"""Shared by the benchmarks: the `--json PATH` option that bench/report.py reads.

Every benchmark keeps printing its human-readable lines; with `--json PATH` it also writes the
figures it measured (one JSON object, numbers in the units the keys say) and the command line,
so the report never parses free text.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any


def add_json_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--json", type=Path, metavar="PATH",
                    help="also write the measured figures as one JSON object to PATH")


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and callable(v.item):  # numpy scalars
        return _clean(v.item())
    return v


def write_json(path: Path | None, figures: dict[str, Any]) -> None:
    """Write `figures` (plus the command line) to `path`; no-op when the option was not given."""
    if path is None:
        return
    out = {"command": shlex.join([sys.executable, *sys.argv]), **figures}
    path.write_text(json.dumps(_clean(out), indent=1, sort_keys=True) + "\n")
