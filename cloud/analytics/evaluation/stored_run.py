"""Score a *stored* analysis run against a ground-truth file (docs/grid-file.md, `wattrail-truth`).

What is scored (the metrics themselves are in metrics.py):
- ranking, per theft type and "any": ROC-AUC, MAP@100/200, precision@k (k = that type's
  thieves), precision@10 per transformer; from every meter's stored score;
- NTL per transformer: the run's ntl_wh vs the truth's stolen_wh summed per transformer
  (meaningful when the run's period equals the truth's span: `spans_match` says so);
- outages, only when the truth has an `outages` list (an optional key for hand-made truth
  files: `{"level": "transformer"|"feeder", "id", "start", "end"}` ISO 8601, end null = still
  out): a detection matches a true outage of the same level and id whose time overlaps it;
  precision = matched detections / detections, recall = matched true outages / true outages,
  delay = detected start - true start (seconds; the step bounds its resolution).
Truth events on meters the run did not analyse (another region) are left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg

from cloud.analytics.evaluation.metrics import (
    labels_from_truth,
    ntl_errors,
    score_ranking,
    stolen_per_transformer,
)

TRUTH_FORMAT, TRUTH_VERSION = "wattrail-truth", 1


class EvaluationError(ValueError):
    """The truth file or the run cannot be scored: the message says which and why."""


@dataclass(frozen=True)
class StoredRun:
    run_id: int
    period_start: datetime
    period_end: datetime
    meter_ids: list[str]
    score: np.ndarray
    tx_of: np.ndarray
    transformer_ids: list[str]
    ntl_wh: np.ndarray
    ntl_sigma_wh: np.ndarray
    outages: list[tuple[str, str, datetime, datetime | None]]


def load_run(conn: psycopg.Connection[Any], run_id: int | None = None) -> StoredRun:
    row = conn.execute(
        "SELECT run_id, period_start, period_end FROM analysis_runs"
        + (" WHERE run_id = %s" if run_id is not None else " ORDER BY run_id DESC LIMIT 1"),
        [run_id] if run_id is not None else []).fetchone()
    if row is None:
        raise EvaluationError(f"no analysis run {run_id}" if run_id is not None
                              else "no analysis run stored yet; run `wattrail analyze` first")
    rid = int(row[0])
    tx = conn.execute("SELECT entity_id, ntl_wh, ntl_sigma_wh FROM analysis_loss WHERE run_id = %s"
                      " AND level = 'transformer' ORDER BY entity_id", [rid]).fetchall()
    tx_ids = [r[0] for r in tx]
    t_ix = {t: i for i, t in enumerate(tx_ids)}
    sus = conn.execute("SELECT meter_id, score, transformer_id FROM analysis_suspects WHERE run_id = %s"
                       " ORDER BY meter_id", [rid]).fetchall()
    out = conn.execute("SELECT level, entity_id, started_at, ended_at FROM analysis_outages"
                       " WHERE run_id = %s ORDER BY started_at, level, entity_id", [rid]).fetchall()
    nan = float("nan")
    return StoredRun(
        rid, row[1], row[2], [r[0] for r in sus], np.array([r[1] for r in sus], np.float64),
        np.array([t_ix[r[2]] for r in sus], np.int64), tx_ids,
        np.array([nan if r[1] is None else r[1] for r in tx], np.float64),
        np.array([nan if r[2] is None else r[2] for r in tx], np.float64),
        [(r[0], r[1], r[2], r[3]) for r in out])


def _when(s: str | None) -> datetime | None:
    return None if s is None else datetime.fromisoformat(s.replace("Z", "+00:00"))


def score_outages(detected: list[tuple[str, str, datetime, datetime | None]],
                  truth: list[dict[str, Any]], period_end: datetime) -> dict[str, Any]:
    true = []
    for t in truth:
        start = _when(t.get("start"))
        if start is None:
            raise EvaluationError(f"truth outage {t!r} has no start")
        true.append((t["level"], t["id"], start, _when(t.get("end")) or period_end))
    det = [(lv, i, s, e or period_end) for lv, i, s, e in detected]

    def overlaps(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
        return bool(a[0] == b[0] and a[1] == b[1] and a[2] <= b[3] and b[2] <= a[3])

    matched_true = [t for t in true if any(overlaps(d, t) for d in det)]
    matched_det = [d for d in det if any(overlaps(d, t) for t in true)]
    delays = [min((d[2] - t[2]).total_seconds() for d in det if overlaps(d, t)) for t in matched_true]
    return {
        "detected": len(det), "true": len(true),
        "precision": len(matched_det) / len(det) if det else float("nan"),
        "recall": len(matched_true) / len(true) if true else float("nan"),
        "delay_s_median": float(np.median(delays)) if delays else float("nan"),
        "delay_s_max": float(max(delays)) if delays else float("nan"),
    }


def evaluate_run(conn: psycopg.Connection[Any], truth: dict[str, Any], run_id: int | None = None
                 ) -> dict[str, Any]:
    if truth.get("format") != TRUTH_FORMAT or truth.get("version") != TRUTH_VERSION:
        raise EvaluationError(f"not a {TRUTH_FORMAT} v{TRUTH_VERSION} file (format="
                              f"{truth.get('format')!r}, version={truth.get('version')!r})")
    run = load_run(conn, run_id)
    known = set(run.meter_ids)
    tx = set(run.transformer_ids)
    events = [e for e in truth["events"] if e["meter_id"] in known and e["transformer_id"] in tx]
    kept = {**truth, "events": events}
    labels = labels_from_truth(kept, run.meter_ids)
    span = (_when(truth.get("start")), _when(truth.get("end")))
    result: dict[str, Any] = {
        "run_id": run.run_id,
        "period": [run.period_start.isoformat(), run.period_end.isoformat()],
        "truth_span": [truth.get("start"), truth.get("end")],
        "spans_match": span == (run.period_start, run.period_end),
        "meters": len(run.meter_ids),
        "events_outside_run": len(truth["events"]) - len(events),
        "ranking": score_ranking(run.score, labels, run.tx_of),
        "ntl": ntl_errors(run.ntl_wh, stolen_per_transformer(kept, run.transformer_ids), run.ntl_sigma_wh),
        "outages": None,
    }
    if isinstance(truth.get("outages"), list):
        result["outages"] = score_outages(run.outages, truth["outages"], run.period_end)
    return result


def format_table(result: dict[str, Any]) -> str:
    lines = [f"run {result['run_id']} {result['period'][0]} .. {result['period'][1]}, "
             f"{result['meters']} meters" + ("" if result["spans_match"] else
                                             "  (truth span differs: NTL comparison is approximate)"),
             f"{'type':12} {'n':>4} {'AUC':>6} {'MAP@100':>8} {'MAP@200':>8} {'P@k':>6} {'P@10/tx':>8}"]
    rank = result["ranking"]
    for kind in sorted(rank, key=lambda k: (k == "any", k)):
        m = rank[kind]
        lines.append(f"{kind:12} {m['n']:4d} {m['auc']:6.3f} {m['map100']:8.3f} {m['map200']:8.3f} "
                     f"{m['p_at_k']:6.3f} {m['p_at_10_tx']:8.3f}")
    nt = result["ntl"]
    lines.append(f"NTL per transformer: median rel err {nt['median_rel_err']:.3f}, within 10% "
                 f"{nt['share_within_10pct']:.2f}, truth within 2 sigma "
                 f"{nt['share_truth_within_2sigma']:.2f}")
    o = result["outages"]
    lines.append("outages: not scored (the truth has no outage list)" if o is None else
                 f"outages: {o['detected']} detected, {o['true']} true, precision {o['precision']:.2f}, "
                 f"recall {o['recall']:.2f}, delay median {o['delay_s_median']:.0f} s")
    return "\n".join(lines)


def jsonable(x: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN), recursively."""
    if isinstance(x, float):
        return x if np.isfinite(x) else None
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    return x
