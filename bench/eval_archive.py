"""Evaluate the archive checks on the simulator's archive errors of known truth
(`wattrail.evaluation.archive`, errors injected by `archive_sim`).

    .venv/bin/python bench/eval_archive.py [--seeds 4101 ... 4105] [--meters 1000] [--json OUT]
                                           [--real-seeds 5101 ... 5105] [--no-realdata]

Per seed: a grid of `--meters` customers on `--transformers` transformers (4 feeders), 28 days
of 15-minute data simulated once, the archive copied with neighbour-transformer, wrong-phase,
missing-record, stale-coordinate and wrong-phase-count errors; the completeness checks and the
connectivity analysis run on the first 1, 7 and 28 days at 15 minutes (voltages, currents,
energy, balance meters) and on 7 and 28 days of hourly voltages only. Prints the table of
docs/archive.md: recall (R) and precision (P) per error kind pooled over the seeds, the share
of found errors whose suggested fix is the true one, correct meters flagged, and the worst
transformer's loss error before and after accepting the suggestions. The thresholds were set
on seeds 11 and 12; the default seeds were never used for that.

Then the energy half of the connectivity check on real households (`archive_real`: London and
New South Wales half-hourly kWh from ../shared/realdata, no voltages, 5 % of meters recorded on
another transformer, with and without 20 % thieves), skipped with a message when the data is
not there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._common import add_json_arg, write_json  # noqa: E402
from wattrail.evaluation import archive, archive_real, archive_sim, scenarios  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(archive_sim.REPORT_SEEDS))
    ap.add_argument("--meters", type=int, default=1000)
    ap.add_argument("--transformers", type=int, default=20)
    ap.add_argument("--real-seeds", type=int, nargs="+", default=list(archive_real.REPORT_SEEDS))
    ap.add_argument("--no-realdata", action="store_true", help="only the simulator's table")
    add_json_arg(ap)
    a = ap.parse_args()
    tuned = set(a.seeds) & set(archive_sim.TUNING_SEEDS)
    report = archive.run(a.seeds, meters=a.meters, transformers=a.transformers)
    print(f"\n### Archive checks on the simulator: {a.meters} meters, {a.transformers} transformers, "
          f"seeds {' '.join(map(str, a.seeds))}" + (" (INCLUDES TUNING SEEDS)" if tuned else
                                                    " (none used for tuning)") + "\n")
    print(archive.table(report))
    if not a.no_realdata:
        try:
            real = archive_real.run(a.real_seeds, say=lambda line: print(line, file=sys.stderr, flush=True))
        except scenarios.RealDataMissing as exc:
            print(f"\nreal-data evaluation skipped: {exc}")
        else:
            report["realdata"] = real
            print(f"\n### Energy-only connectivity on real households, seeds "
                  f"{' '.join(map(str, a.real_seeds))} (none used for tuning)\n")
            print(archive_real.table(real))
    write_json(a.json, report)


if __name__ == "__main__":
    main()
