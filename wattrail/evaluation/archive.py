"""Score the archive checks on the simulator's archive errors (archive_sim.py), per error kind.

    .venv/bin/python bench/eval_archive.py            # the report seeds, writes docs table

Per case (one seed, 28 days of 15-minute data simulated once) and condition:

    15min-1d, 15min-7d, 15min-28d   voltages, currents, interval energy, balance meters
    60min-7d-V, 60min-28d-V         voltages only, hourly, no balance meters, no currents

scores, per error kind, recall (injected errors found) and precision (of the findings of the
kind meant for it, the share that are injected errors), and for connectivity also the share of
found errors whose suggested transformer / phase is the true one and the share of correctly
recorded meters flagged. The loss report: per transformer, loss = balance energy - sum of its
meters' energy over the period, computed on the archive as recorded, after accepting every
suggested correction (moves, and the voltage's placement of meters missing from the archive),
and on the truth; the error is |loss - true loss| / the transformer's input energy.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from cloud.archive import completeness, connectivity
from wattrail.evaluation import archive_sim as sim

CONDITIONS: dict[str, tuple[float, int, bool]] = {  # name -> (days, decimation, voltage only)
    "15min-1d": (1.0, 1, False),
    "15min-7d": (7.0, 1, False),
    "15min-28d": (28.0, 1, False),
    "60min-7d-V": (7.0, 4, True),
    "60min-28d-V": (28.0, 4, True),
}
FINDING_FOR = {"missing_record": "not_in_archive", "stale_coords": "stale_coordinates",
               "wrong_phase_count": "phase_count_mismatch"}


def _pr(found: set[str], injected: set[str]) -> dict[str, Any]:
    tp = len(found & injected)
    return {"injected": len(injected), "flagged": len(found), "tp": tp,
            "recall": tp / len(injected) if injected else float("nan"),
            "precision": tp / len(found) if found else float("nan")}


def loss_errors(case: sim.Case, feed: Any, tx_of: np.ndarray) -> dict[str, float]:
    """Loss per transformer with meters assigned by tx_of (-1: not counted) vs the truth."""
    cust, bal = feed.customers, feed.balance
    e = (cust.import_wh[:, -1] - cust.import_wh[:, 0]) - (cust.export_wh[:, -1] - cust.export_wh[:, 0])
    e_bal = (bal.import_wh[:, -1] - bal.import_wh[:, 0]) - (bal.export_wh[:, -1] - bal.export_wh[:, 0])
    n_x = len(e_bal)
    truth = np.array([feed.topology.tx_of[j] for j in range(len(e))])
    def loss(assign: np.ndarray) -> np.ndarray:
        ok = assign >= 0
        return np.asarray(e_bal - np.bincount(assign[ok], weights=e[ok], minlength=n_x))
    err = np.abs(loss(tx_of) - loss(truth)) / e_bal
    return {"median": float(np.median(err)), "max": float(np.max(err)),
            "within_1pct": float(np.mean(err <= 0.01)), "transformers": n_x,
            "total": float(abs(loss(tx_of).sum() - loss(truth).sum()) / e_bal.sum())}


def score_case(case: sim.Case, feed28: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    truth_tx = {c.meter_id: c.transformer_id for c in case.grid.customers}
    truth_ph = {c.meter_id: c.phase for c in case.grid.customers}
    err = case.errors
    conn_err = err["neighbour_tx"] | err["wrong_phase"]
    for name, (days, dec, v_only) in CONDITIONS.items():
        feed = sim.head(feed28, round(days * 96) + 1)
        if dec > 1:
            feed = sim.every(feed, dec)
        inp = sim.connectivity_input(case, feed, voltage_only=v_only)
        t = time.perf_counter()
        res = connectivity.analyse(inp)
        secs = time.perf_counter() - t
        ids = inp.meter_ids
        tx_flag = {ids[j] for j in np.flatnonzero(res.tx_suspect)}
        ph_flag = {ids[j] for j in np.flatnonzero(res.phase_suspect)}
        right_tx = {ids[j] for j in range(len(ids))
                    if res.best_tx[j] >= 0 and inp.transformer_ids[res.best_tx[j]] == truth_tx[ids[j]]}
        right_ph = {ids[j] for j in range(len(ids)) if res.best_phase[j] == (truth_ph[ids[j]] if
                    truth_ph[ids[j]] is not None else -1)}
        recorded = {ids[j] for j in range(len(ids)) if inp.recorded_tx[j] >= 0}
        correct = recorded - conn_err
        cell: dict[str, Any] = {
            "seconds": round(secs, 2),
            "neighbour_tx": {**_pr(tx_flag, err["neighbour_tx"]),
                             "fix_right": len(tx_flag & err["neighbour_tx"] & right_tx)},
            "wrong_phase": {**_pr(ph_flag, err["wrong_phase"]),
                            "fix_right": len(ph_flag & err["wrong_phase"] & right_ph)},
            "correct_flagged": len((tx_flag | ph_flag) & correct), "correct": len(correct),
            "placed_right": len(err["missing_record"] & right_tx),
        }
        # top suspicions: the list as ranked, as long as the injected count
        order = [ids[j] for j in res.suspects()]
        k = len(err["neighbour_tx"] | err["wrong_phase"])
        cell["top_k_recall"] = len(set(order[:k]) & conn_err) / k if k else float("nan")
        # loss: as recorded, and after accepting every suggestion (moves and placements)
        if not v_only:
            rec = inp.recorded_tx.copy()
            fixed = np.where(res.tx_suspect | (inp.recorded_tx < 0), res.best_tx, rec)
            cell["loss_before"] = loss_errors(case, feed, rec)
            cell["loss_after"] = loss_errors(case, feed, fixed)
        # completeness on this window (placement suggestions from the connectivity run)
        snap, summ = sim.snapshot(case, feed)
        suggest = {ids[j]: (inp.transformer_ids[res.best_tx[j]], int(res.best_phase[j]),
                            float(res.confidence[j]))
                   for j in range(len(ids)) if inp.recorded_tx[j] < 0 and res.best_tx[j] >= 0}
        data_tx = {ids[j]: inp.transformer_ids[res.best_tx[j]] for j in np.flatnonzero(res.tx_suspect)}
        found = completeness.check(snap, summ, suggest=suggest, data_tx=data_tx)
        for kind, fkind in FINDING_FOR.items():
            objs = {f.evidence.get("meter_id", f.object_id) for f in found if f.kind == fkind}
            cell[kind] = _pr(objs, err[kind])
        cell["findings"] = {k: sum(1 for f in found if f.kind == k) for k in completeness.KINDS}
        out[name] = cell
    return out


def run(seeds: list[int], meters: int = 1000, transformers: int = 20) -> dict[str, Any]:
    results = []
    for seed in seeds:
        t = time.perf_counter()
        case = sim.make_case(seed, meters=meters, transformers=transformers)
        feed = sim.simulate(case, 28.0)
        t_sim = time.perf_counter() - t
        r = score_case(case, feed)
        results.append({"seed": seed, "simulate_s": round(t_sim, 1), "conditions": r})
        print(f"seed {seed}: simulated in {t_sim:.1f} s, scored in {time.perf_counter() - t - t_sim:.1f} s",
              flush=True)
    return {"seeds": seeds, "meters": meters, "transformers": transformers, "results": results}


def pooled(results: list[dict[str, Any]], cond: str, kind: str) -> dict[str, float]:
    cells = [r["conditions"][cond][kind] for r in results]
    inj = sum(c["injected"] for c in cells)
    fl = sum(c["flagged"] for c in cells)
    tp = sum(c["tp"] for c in cells)
    out = {"injected": inj, "flagged": fl, "recall": tp / inj if inj else float("nan"),
           "precision": tp / fl if fl else float("nan")}
    if "fix_right" in cells[0]:
        out["fix_right"] = sum(c["fix_right"] for c in cells) / tp if tp else float("nan")
    return out


def table(report: dict[str, Any]) -> str:
    res = report["results"]
    kinds = ("neighbour_tx", "wrong_phase", "missing_record", "stale_coords", "wrong_phase_count")
    lines = ["| condition | " + " | ".join(kinds) + " | correct meters flagged | top-k recall "
             "| transformers with loss within 1 % of truth, before -> after | worst transformer after |",
             "|---" * (len(kinds) + 5) + "|"]
    for cond in CONDITIONS:
        cells = []
        for k in kinds:
            p = pooled(res, cond, k)
            extra = f", fix {p['fix_right']:.2f}" if "fix_right" in p and np.isfinite(p["fix_right"]) else ""
            cells.append(f"R {p['recall']:.3f} P {p['precision']:.3f}{extra} (n={p['injected']})")
        cf = sum(r["conditions"][cond]["correct_flagged"] for r in res)
        cn = sum(r["conditions"][cond]["correct"] for r in res)
        topk = float(np.mean([r["conditions"][cond]["top_k_recall"] for r in res]))
        if "loss_after" in res[0]["conditions"][cond]:
            nt = sum(r["conditions"][cond]["loss_before"]["transformers"] for r in res)
            b = sum(r["conditions"][cond]["loss_before"]["within_1pct"] * r["conditions"][cond]["loss_before"]
                    ["transformers"] for r in res) / nt
            a = sum(r["conditions"][cond]["loss_after"]["within_1pct"] * r["conditions"][cond]["loss_after"]
                    ["transformers"] for r in res) / nt
            w = max(r["conditions"][cond]["loss_after"]["max"] for r in res)
            loss = f"{100 * b:.0f} % -> {100 * a:.0f} % | {100 * w:.1f} % of its input"
        else:
            loss = "n/a (no balance meters) | n/a"
        share = f"{cf}/{cn} ({100 * cf / cn:.2f}%)"
        lines.append(f"| {cond} | " + " | ".join(cells) + f" | {share} | {topk:.3f} | {loss} |")
    return "\n".join(lines)
