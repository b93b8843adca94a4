"""Evaluate the analytics against the simulator's ground truth, in memory (no database).

    .venv/bin/python -m wattrail.evaluation.simulator --seeds 2024 2025 2026 --days 7 --json eval.json

It lives in `wattrail/` because it wires `firmware_sim` (the truth) to `cloud.analytics`
(the detector); `cloud/` itself never imports the simulator.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from cloud.analytics.evaluation.metrics import (
    labels_from_truth,
    ntl_errors,
    score_ranking,
    stolen_per_transformer,
)
from cloud.analytics.pipeline import stages as pipeline


def evaluate_simulation(
    seed: int,
    *,
    meters: int = 2000,
    days: float = 5.0,
    theft_rate: float = 0.1,
    replacement_rate: float = 0.01,
    fault_rate: float = 0.02,
    step_s: int = 900,
) -> dict[str, Any]:
    """Simulate, sample, analyse and score one seed. Imports the simulator lazily (see simfeed)."""
    from firmware_sim.faults import plan_faults
    from firmware_sim.grid_service import build_simulation
    from firmware_sim.simulation import IMP
    from firmware_sim.truth import build_truth
    from wattrail import simfeed

    t = time.perf_counter()
    sim = build_simulation(meters=meters, seed=seed, theft_rate=theft_rate, replacement_rate=replacement_rate)
    reg0 = {c.meter_id: float(sim.cust_rep[i, IMP]) for i, c in enumerate(sim.grid.customers)}
    faults = plan_faults(seed, list(reg0), fault_rate, reg0)
    feed = simfeed.sample(sim, step_s, int(days * 86400 / step_s) + 1, faults)
    t_sim = time.perf_counter() - t
    truth = build_truth(sim)
    t = time.perf_counter()
    rep = pipeline.run(feed)
    t_run = time.perf_counter() - t
    topo = feed.topology
    labels = labels_from_truth(truth, topo.meter_ids)
    return {
        "seed": seed,
        "meters": meters,
        "days": days,
        "theft_rate": theft_rate,
        "seconds": {"simulate_and_sample": round(t_sim, 1), "analytics": round(t_run, 1)},
        "ranking": score_ranking(rep.suspects.score, labels, topo.tx_of),
        "ntl": ntl_errors(rep.ntl_wh, stolen_per_transformer(truth, topo.transformer_ids), rep.ntl_sigma_wh),
    }


def format_table(results: list[dict[str, Any]]) -> str:
    kinds = sorted({k for r in results for k in r["ranking"]}, key=lambda k: (k == "any", k))
    lines = [f"{'type':12} {'n':>4} {'AUC':>6} {'MAP@100':>8} {'MAP@200':>8} {'P@k':>6} {'P@10/tx':>8}"]
    for k in kinds:
        rows = [r["ranking"][k] for r in results if k in r["ranking"]]
        mean = {
            m: float(np.nanmean([x[m] for x in rows]))
            for m in ("auc", "map100", "map200", "p_at_k", "p_at_10_tx")
        }
        n = sum(x["n"] for x in rows)
        lines.append(
            f"{k:12} {n:4d} {mean['auc']:6.3f} {mean['map100']:8.3f} {mean['map200']:8.3f} "
            f"{mean['p_at_k']:6.3f} {mean['p_at_10_tx']:8.3f}"
        )
    for r in results:
        nt = r["ntl"]
        lines.append(
            f"seed {r['seed']}: NTL median rel err {nt['median_rel_err']:.3f}, within 10% "
            f"{nt['share_within_10pct']:.2f}, max {nt['max_rel_err']:.3f}; seconds {r['seconds']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--meters", type=int, default=2000)
    ap.add_argument("--days", type=float, default=5.0)
    ap.add_argument("--theft-rate", type=float, default=0.1)
    ap.add_argument("--json", help="write the full results here")
    a = ap.parse_args(argv)
    results = [evaluate_simulation(s, meters=a.meters, days=a.days, theft_rate=a.theft_rate) for s in a.seeds]
    print(format_table(results))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
