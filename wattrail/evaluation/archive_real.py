"""The connectivity check's energy test on real households (`../shared/realdata`), with
mis-associations of known truth.

Real MDM exports carry interval energy and no voltages, so only the energy-balance half of
`cloud.archive.connectivity` can run: each scenario is `scenarios.build`'s transformers of real
London or New South Wales households with a balance meter (their true draw plus technical loss,
class 0.5 error) and, optionally, 20 % of the households stealing (the nine attack kinds of the
theft evaluation); then `rate` of the meters are recorded on a random other transformer. The
analysis sees the recorded assignment, the meters' reported energy and the balance meters'.

Scored per condition (period length, thieves or not): recall and precision of the
mis-associations, the share whose suggested transformer is the true one, correct meters flagged
(thieves included: a thief must not read as mislabelled), and the transformers' loss within 1 %
of the truth before and after accepting the suggestions. Seeds: `REPORT_SEEDS`; nothing was
tuned on real data (the thresholds come from the simulator's tuning seeds 11 and 12).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from cloud.archive import connectivity
from wattrail.evaluation import scenarios

REPORT_SEEDS = (5101, 5102, 5103, 5104, 5105)
CONDITIONS: dict[str, tuple[float | None, float]] = {  # name -> (last days, theft fraction)
    "7d": (7.0, 0.0),
    "7d-thieves": (7.0, 0.2),
    "42d": (None, 0.0),
    "42d-thieves": (None, 0.2),
}


def _case(dataset: str, seed: int, days: float | None, theft: float, rate: float,
          hh: scenarios.Households) -> tuple[connectivity.ConnectivityInput, np.ndarray, np.ndarray, Any]:
    sc = scenarios.build(dataset, seed, theft_fraction=max(theft, 1e-9), households=hh)
    feed = sc.feed
    if theft == 0:  # build always draws at least one thief; undo its attack for the honest case
        feed.customers.import_wh = scenarios._registers(sc.true_kwh, feed.customers.import_wh[:, 0])
    # the last `days` of the data: every attack has started by then (scenarios.build starts
    # them between day 7 and a week before the end)
    k = feed.n_instants if days is None else min(feed.n_instants, round(days * 86400 / feed.step_s) + 1)
    cust, bal = feed.customers, feed.balance
    e = np.diff(cust.import_wh[:, -k:], axis=1)
    e_bal = np.diff(bal.import_wh[:, -k:], axis=1)
    truth = np.asarray(feed.topology.tx_of, np.int64)
    n, n_x = len(truth), e_bal.shape[0]
    rng = np.random.default_rng(seed * 104729 + 3)
    wrong = rng.choice(n, max(1, round(rate * n)), replace=False)
    rec = truth.copy()
    for j in wrong:
        rec[j] = int(rng.choice([x for x in range(n_x) if x != truth[j]]))
    inp = connectivity.ConnectivityInput(
        meter_ids=list(feed.topology.meter_ids), transformer_ids=list(feed.topology.transformer_ids),
        recorded_tx=rec, recorded_phase=np.full(n, -1, np.int64), phases=np.ones(n, np.int64),
        v=np.full((n, k, 3), np.nan), energy_wh=e, tx_energy_wh=e_bal)
    return inp, truth, wrong, sc


def _loss_within(e: np.ndarray, e_bal: np.ndarray, assign: np.ndarray, truth: np.ndarray) -> float:
    ee = np.nansum(e, axis=1)
    eb = np.nansum(e_bal, axis=1)
    n_x = len(eb)

    def loss(a: np.ndarray) -> np.ndarray:
        return np.asarray(eb - np.bincount(a, weights=ee, minlength=n_x))
    return float(np.mean(np.abs(loss(assign) - loss(truth)) / eb <= 0.01))


def run(seeds: list[int], datasets: tuple[str, ...] = ("lcl", "sgsc"), rate: float = 0.05,
        say: Any = print) -> dict[str, Any]:
    out: dict[str, Any] = {"seeds": seeds, "datasets": list(datasets), "rate": rate, "cells": {}}
    for ds in datasets:
        hh = scenarios.load(ds)
        for cond, (days, theft) in CONDITIONS.items():
            acc: dict[str, Any] = {"injected": 0, "flagged": 0, "tp": 0, "fix_right": 0, "correct": 0,
                   "correct_flagged": 0, "thieves_flagged": 0, "thieves": 0,
                   "within_before": [], "within_after": [], "seconds": []}
            for seed in seeds:
                inp, truth, wrong, sc = _case(ds, seed, days, theft, rate, hh)
                t = time.perf_counter()
                res = connectivity.analyse(inp)
                acc["seconds"].append(time.perf_counter() - t)
                flag = set(np.flatnonzero(res.tx_suspect).tolist())
                w = set(wrong.tolist())
                acc["injected"] += len(w)
                acc["flagged"] += len(flag)
                acc["tp"] += len(flag & w)
                acc["fix_right"] += sum(1 for j in flag & w if res.best_tx[j] == truth[j])
                correct = set(range(len(truth))) - w
                acc["correct"] += len(correct)
                acc["correct_flagged"] += len(flag & correct)
                thieves = set(np.flatnonzero(sc.labels["any"]).tolist()) if theft > 0 else set()
                acc["thieves"] += len(thieves - w)
                acc["thieves_flagged"] += len(flag & (thieves - w))
                fixed = np.where(res.tx_suspect, res.best_tx, inp.recorded_tx)
                assert inp.energy_wh is not None and inp.tx_energy_wh is not None
                acc["within_before"].append(_loss_within(inp.energy_wh, inp.tx_energy_wh,
                                                         inp.recorded_tx, truth))
                acc["within_after"].append(_loss_within(inp.energy_wh, inp.tx_energy_wh, fixed, truth))
            acc["within_before"] = float(np.mean(acc["within_before"]))
            acc["within_after"] = float(np.mean(acc["within_after"]))
            acc["seconds"] = float(np.median(acc["seconds"]))
            out["cells"][f"{ds}/{cond}"] = acc
            say(f"{ds} {cond}: {acc['tp']}/{acc['injected']} found, {acc['correct_flagged']} "
                f"correct flagged")
    return out


def table(report: dict[str, Any]) -> str:
    lines = ["| dataset / condition | mis-associations found (recall) | precision | right fix "
             "| correct meters flagged | of them thieves | transformers' loss within 1 %, before -> after |",
             "|---|---|---|---|---|---|---|"]
    for name, c in report["cells"].items():
        rec = c["tp"] / c["injected"] if c["injected"] else float("nan")
        prec = c["tp"] / c["flagged"] if c["flagged"] else float("nan")
        fix = c["fix_right"] / c["tp"] if c["tp"] else float("nan")
        th = f"{c['thieves_flagged']}/{c['thieves']}" if c["thieves"] else "-"
        lines.append(f"| {name} | {c['tp']}/{c['injected']} ({rec:.2f}) | {prec:.2f} | {fix:.2f} | "
                     f"{c['correct_flagged']}/{c['correct']} "
                     f"({100 * c['correct_flagged'] / c['correct']:.1f} %) "
                     f"| {th} | {100 * c['within_before']:.0f} % -> {100 * c['within_after']:.0f} % |")
    return "\n".join(lines)
