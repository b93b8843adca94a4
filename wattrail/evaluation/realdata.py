"""Evaluate the suspect ranking and the NTL estimates on real households (`wattrail.evaluation.scenarios`).

    .venv/bin/python bench/eval_realdata.py --seeds 101 102 ... --datasets lcl sgsc

For every scenario the same metrics are computed for Wattrail's ranking and for two baselines
an analyst would try first, in the same run on the same data:
- drop ratio: mean consumption before the middle of the period / after it (higher = more
  suspect);
- peer median: the same ratio of the customer's consumption to its transformer's median
  customer, so a cold spell that raises everyone's use does not hide a drop.
Per attack kind, the positives are the thieves of that kind and the negatives the honest
customers (other thieves are left out); AUC, MAP@10 and MAP@20 as in `cloud.analytics.evaluation.metrics`.
NTL error per transformer with a thief: |estimate - stolen| / stolen, and whether the estimate
is within 10 % of the stolen energy or within its own sigma.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np

from cloud.analytics.evaluation.metrics import map_at, roc_auc
from cloud.analytics.pipeline import stages as pipeline
from wattrail.evaluation import scenarios as realdata

METHODS = ("wattrail", "drop_ratio", "peer_median")


def drop_ratio(reported_kwh: np.ndarray) -> np.ndarray:
    half = reported_kwh.shape[1] // 2
    with np.errstate(all="ignore"):
        before = np.nanmean(reported_kwh[:, :half], axis=1)
        after = np.nanmean(reported_kwh[:, half:], axis=1)
        out = before / after
    res: np.ndarray = np.nan_to_num(out, nan=0.0, posinf=1e9)
    return res


def peer_median(reported_kwh: np.ndarray, tx_of: np.ndarray) -> np.ndarray:
    out = np.zeros(len(reported_kwh))
    with np.errstate(all="ignore"):
        for x in np.unique(tx_of):
            sel = tx_of == x
            med = np.nanmedian(reported_kwh[sel], axis=0)
            rel = reported_kwh[sel] / np.where(med > 0, med, np.nan)
            out[sel] = drop_ratio(rel)
    return out


def _metrics(score: np.ndarray, labels: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    honest = ~labels["any"]
    out: dict[str, dict[str, float]] = {}
    for kind, pos in labels.items():
        if not pos.any():
            continue
        keep = pos | honest
        s, lab = score[keep], pos[keep]
        out[kind] = {"auc": roc_auc(s, lab), "map10": map_at(s, lab, 10), "map20": map_at(s, lab, 20),
                     "n": int(lab.sum())}
    return out


def evaluate(sc: realdata.Scenario) -> dict[str, Any]:
    feed = sc.feed
    day = 86400 // feed.step_s
    t = time.perf_counter()
    rep = pipeline.run(feed, day=day, block=day // 4)
    run_s = time.perf_counter() - t
    scores = {
        "wattrail": np.nan_to_num(rep.suspects.score, nan=0.0),
        "drop_ratio": drop_ratio(sc.reported_kwh),
        "peer_median": peer_median(sc.reported_kwh, feed.topology.tx_of),
    }
    has = sc.stolen_wh > 0
    err = np.abs(rep.ntl_wh - sc.stolen_wh) / np.where(has, sc.stolen_wh, np.nan)
    ok = (err <= 0.10) | (np.abs(rep.ntl_wh - sc.stolen_wh) <= rep.ntl_sigma_wh)
    return {
        "dataset": sc.dataset, "seed": sc.seed, "variant": sc.variant,
        "customers": len(sc.attack_of), "transformers": len(sc.stolen_wh),
        "metrics": {m: _metrics(s, sc.labels) for m, s in scores.items()},
        "ntl": {"rel_err_median": float(np.nanmedian(err[has])) if has.any() else float("nan"),
                "within": float(ok[has].mean()) if has.any() else float("nan"),
                "ntl_wh": rep.ntl_wh.tolist(), "sigma_wh": rep.ntl_sigma_wh.tolist(),
                "stolen_wh": sc.stolen_wh.tolist()},
        "run_s": run_s,
    }


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    kinds = ["any", *realdata.ATTACKS]
    table: dict[str, Any] = {}
    for m in METHODS:
        table[m] = {}
        for k in kinds:
            vals = [r["metrics"][m][k] for r in results if k in r["metrics"][m]]
            if vals:
                table[m][k] = {f: float(np.nanmean([v[f] for v in vals])) for f in ("auc", "map10", "map20")}
                table[m][k]["n"] = int(sum(v["n"] for v in vals))
    ntl = [r["ntl"] for r in results]
    return {"runs": len(results), "table": table,
            "ntl_rel_err_median": float(np.nanmedian([n["rel_err_median"] for n in ntl])),
            "ntl_within": float(np.nanmean([n["within"] for n in ntl]))}


def render(summary: dict[str, Any], title: str) -> str:
    kinds = [k for k in ["any", *realdata.ATTACKS] if k in summary["table"]["wattrail"]]
    lines = [f"### {title} ({summary['runs']} scenarios)", "",
             "| attack | n | " + " | ".join(f"{m} AUC | {m} MAP@10" for m in METHODS) + " |",
             "|---|---:|" + "---:|" * (2 * len(METHODS))]
    for k in kinds:
        row = summary["table"]
        cells = [f"{row[m][k]['auc']:.3f} | {row[m][k]['map10']:.3f}" for m in METHODS]
        lines.append(f"| {k} | {row['wattrail'][k]['n']} | " + " | ".join(cells) + " |")
    lines += ["", "MAP@20 overall: " + ", ".join(
        f"{m} {summary['table'][m]['any']['map20']:.3f}" for m in METHODS),
        f"NTL per transformer with a thief: median relative error "
        f"{summary['ntl_rel_err_median']:.3f}, within 10 % or its sigma {summary['ntl_within']:.2f}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(1001, 1021)),
                    help="scenario seeds (the reported ones were never used for tuning)")
    ap.add_argument("--datasets", nargs="+", default=list(realdata.DATASETS), choices=list(realdata.DATASETS))
    ap.add_argument("--variants", nargs="+", default=["energy", "full"], choices=["energy", "full"])
    ap.add_argument("--json", help="write every scenario's figures here")
    args = ap.parse_args(argv)
    try:
        data = {d: realdata.load(d) for d in args.datasets}
    except realdata.RealDataMissing as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 0
    out: dict[str, Any] = {}
    total = len(args.variants) * len(args.datasets) * len(args.seeds)
    done = 0
    for variant in args.variants:
        results = []
        for d in args.datasets:
            for seed in args.seeds:
                results.append(evaluate(realdata.build(d, seed, variant=variant, households=data[d])))
                done += 1
                print(f"[{done}/{total}] {variant} {d} seed {seed}", file=sys.stderr, flush=True)
        out[variant] = {"summary": summarise(results), "scenarios": results}
        print(render(out[variant]["summary"], f"{variant} variant, {', '.join(args.datasets)}"))
        print()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
