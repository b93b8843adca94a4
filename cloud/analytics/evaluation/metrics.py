"""Score a suspect ranking and the NTL estimates against the simulator's ground truth.

Metrics (pure functions on arrays; higher score = more suspect):
- ROC-AUC: probability that a random positive outranks a random negative (ties count half),
  per theft type with positives = meters with that type, negatives = meters with no theft;
- MAP@N (as in the SGCC theft literature): over the top N, the mean of precision@i at the rank
  i of each true thief found there;
- precision@k with k = number of true thieves, and precision@10 within each transformer
  (hits in its top 10 / min(10, its thieves), mean over transformers with a thief);
- NTL error per transformer: |estimate - truth| / |truth|, truth = the stolen_wh of the
  transformer's theft events (ground-truth identity, docs/grid-file.md).
`wattrail/evaluation/simulator.py` runs the whole chain in memory: simulator -> readings at 15 min
(`wattrail/simfeed.py`) -> `pipeline.run` -> these metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def roc_auc(score: np.ndarray, label: np.ndarray) -> float:
    pos, neg = int(label.sum()), int((~label).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    s = score[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[label].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def map_at(score: np.ndarray, label: np.ndarray, n: int) -> float:
    top = label[np.argsort(-score, kind="mergesort")[:n]]
    hits = np.flatnonzero(top)
    if len(hits) == 0:
        return 0.0
    return float(np.mean(np.arange(1, len(hits) + 1) / (hits + 1)))


def precision_at(score: np.ndarray, label: np.ndarray, k: int) -> float:
    if k <= 0:
        return float("nan")
    return float(label[np.argsort(-score, kind="mergesort")[:k]].mean())


def precision_per_group(score: np.ndarray, label: np.ndarray, group: np.ndarray, k: int = 10) -> float:
    """Mean over groups with a positive of hits in the group's top k / min(k, its positives):
    a transformer with 3 thieves can at best put 3 in its top 10, which scores 1."""
    vals = []
    for g in np.unique(group):
        s, lab = score[group == g], label[group == g]
        if lab.any():
            top = lab[np.argsort(-s, kind="mergesort")[:k]]
            vals.append(top.sum() / min(k, int(lab.sum())))
    return float(np.mean(vals)) if vals else float("nan")


def labels_from_truth(truth: dict[str, Any], meter_ids: list[str]) -> dict[str, np.ndarray]:
    """type -> bool (N,) meters with a theft event of that type; "any" for all theft types."""
    index = {m: i for i, m in enumerate(meter_ids)}
    out: dict[str, np.ndarray] = {"any": np.zeros(len(meter_ids), bool)}
    for ev in truth["events"]:
        if ev["is_theft"]:
            out.setdefault(ev["type"], np.zeros(len(meter_ids), bool))[index[ev["meter_id"]]] = True
            out["any"][index[ev["meter_id"]]] = True
    return out


def stolen_per_transformer(truth: dict[str, Any], transformer_ids: list[str]) -> np.ndarray:
    index = {t: i for i, t in enumerate(transformer_ids)}
    out = np.zeros(len(transformer_ids))
    for ev in truth["events"]:
        if ev["is_theft"]:
            out[index[ev["transformer_id"]]] += ev["stolen_wh"]
    return out


def score_ranking(
    score: np.ndarray, labels: dict[str, np.ndarray], group: np.ndarray
) -> dict[str, dict[str, float]]:
    """Per type (and "any"): n, auc, map@100, map@200, p@k, p@10/transformer."""
    thief = labels["any"]
    table: dict[str, dict[str, float]] = {}
    for kind, pos in sorted(labels.items()):
        keep = pos | ~thief  # this type's thieves against the honest meters
        s, lab, g = score[keep], pos[keep], group[keep]
        table[kind] = {
            "n": int(pos.sum()),
            "auc": roc_auc(s, lab),
            "map100": map_at(s, lab, 100),
            "map200": map_at(s, lab, 200),
            "p_at_k": precision_at(s, lab, int(lab.sum())),
            "p_at_10_tx": precision_per_group(s, lab, g, 10),
        }
    return table


def ntl_errors(estimate_wh: np.ndarray, truth_wh: np.ndarray, sigma_wh: np.ndarray) -> dict[str, Any]:
    rel = np.abs(estimate_wh - truth_wh) / np.maximum(np.abs(truth_wh), 1e-9)
    return {
        "median_rel_err": float(np.median(rel)),
        "max_rel_err": float(rel.max()),
        "share_within_10pct": float((rel <= 0.10).mean()),
        "share_truth_within_2sigma": float((np.abs(estimate_wh - truth_wh) <= 2 * sigma_wh).mean()),
        "per_transformer": [
            {
                "estimate_kwh": round(float(e) / 1e3, 1),
                "truth_kwh": round(float(t) / 1e3, 1),
                "sigma_kwh": round(float(s) / 1e3, 1),
                "rel_err": round(float(r), 4),
            }
            for e, t, s, r in zip(estimate_wh, truth_wh, sigma_wh, rel, strict=True)
        ],
    }
