"""The VEE evaluation: validation rules and estimation methods scored on real households with
injected faults of known truth (`wattrail.evaluation.vee_faults`); `python bench/eval_vee.py`.

For each dataset (the London and the New South Wales half-hourly files, labelled in their own
zones) and seed: inject faults, run `cloud.mdm.validation.validate` with its default `Params`
and `cloud.mdm.estimation.estimate`, and score

- per rule, at the interval level: precision and recall against the intervals whose fault the
  rule is meant to catch (`vee_faults.CATCHES`), and the false-positive rate on the clean
  intervals (no fault, present in the source). A flag on a fault the rule is not meant for
  counts against precision, not against the FPR; `fp_clean` / `fp_other` tell them apart.
  Intervals absent in the source are scored nowhere (they are real, not injected);
- per fault: the share of its intervals caught by the rule(s) meant for it;
- per estimation method (LINEAR, LIKE_DAY, LIKE_DAY_SCALED), on every interval it filled
  whose true value is known (the injected faults and the rules' false alarms alike): MAE,
  the energy error per run (Σ over runs of |Σ estimate - Σ true|, over Σ true) and the bias,
  next to naive fills of the same intervals measured in the same run: the meter's mean, the
  last valid interval (zero-order hold) and the meter's mean at the same local time of day.
  Two variants: `export` (interval kWh only, as an MDM export) and `registers` (the meter's
  register read at every boundary outside an outage: LINEAR spreads the register difference,
  LIKE_DAY is scaled to it).

`clean_alarms` runs the rules on the real data before any injection: what they flag there is
what a utility would see on its own data (MISSING and GAP there are the source's real holes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cloud.mdm.calendar import local_parts, zone
from cloud.mdm.estimation import Estimated, Method, estimate
from cloud.mdm.validation import REPLACE, Rule, Series, Validation, runs, validate
from wattrail.evaluation import scenarios as realdata
from wattrail.evaluation.vee_faults import CATCHES, Fault, FaultPlan, Injected, inject

F64 = npt.NDArray[np.float64]
ZONES = {"lcl": "Europe/London", "sgsc": "Australia/Sydney"}
TUNING_SEEDS = (1, 2, 3)  # the fault plan and the test's bounds were set on these only
REPORT_SEEDS = tuple(range(2001, 2011))
METHODS = (Method.LINEAR, Method.LIKE_DAY, Method.LIKE_DAY_SCALED)
BASELINES = ("meter_mean", "hold", "slot_mean")
VARIANTS = ("export", "registers")
RULES = tuple(str(r.name) for r in Rule)  # every rule, in flag order


@dataclass(frozen=True)
class Dataset:
    name: str
    households: realdata.Households
    ts_s: npt.NDArray[np.int64]
    zone: str

    def series(self, kwh: F64) -> Series:
        return Series(self.ts_s, self.households.step_s, local_parts(self.ts_s, zone(self.zone)), kwh)


def dataset(name: str, households: realdata.Households | None = None, meters: int | None = None) -> Dataset:
    """`name`'s households (the first `meters` of them, for a quick run) labelled in its zone.
    Raises `realdata.RealDataMissing` (naming the folder) where the data is absent."""
    if name not in ZONES:
        raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(ZONES)}")
    hh = households if households is not None else realdata.load(name)
    if meters is not None:
        hh = realdata.Households(hh.ids[:meters], hh.t0_s, hh.step_s, hh.kwh[:meters])
    ts = hh.t0_s + hh.step_s * np.arange(hh.kwh.shape[1], dtype=np.int64)
    return Dataset(name, hh, ts, ZONES[name])


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def score_rules(v: Validation, inj: Injected, catches: dict[Fault, Rule] = CATCHES) -> dict[str, Any]:
    scored = ~inj.source_missing
    clean = scored & (inj.truth == Fault.CLEAN)
    ran = {o.rule: o for o in v.outcomes}
    out: dict[str, Any] = {}
    for rule in Rule:
        name = str(rule.name)
        o = ran.get(rule)
        meant = [f for f, r in catches.items() if r & rule]
        pos = scored & np.isin(inj.truth, meant)
        row: dict[str, Any] = {"ran": bool(o and o.ran), "why_not": o.why_not if o else "not run",
                               "positives": int(pos.sum()), "meant_for": [f.name for f in meant]}
        if o is not None and o.ran:
            flag = v.failed(rule) & scored
            tp = int((flag & pos).sum())
            row.update(flagged=int(flag.sum()), tp=tp, fp_clean=int((flag & clean).sum()),
                       fp_other=int((flag & ~pos & ~clean).sum()),
                       precision=_ratio(tp, int(flag.sum())), recall=_ratio(tp, int(pos.sum())),
                       fpr=_ratio(int((flag & clean).sum()), int(clean.sum())))
        out[name] = row
    return out


def score_faults(v: Validation, inj: Injected, catches: dict[Fault, Rule] = CATCHES) -> dict[str, Any]:
    """Per fault: the share of its intervals its rule(s) caught, and the share any rule flagged."""
    out: dict[str, Any] = {}
    ran = Rule(sum(o.rule for o in v.outcomes if o.ran))
    for f, rules in catches.items():
        at = inj.truth == f
        n = int(at.sum())
        if not n:
            continue
        usable = rules & ran
        caught = (v.flags[at] & np.uint32(usable)) != 0
        out[str(f.name)] = {"n": n, "rules": str(rules.name), "rules_not_run": str((rules & ~ran).name or ""),
                       "caught": float(caught.mean()) if usable else float("nan"),
                       "any_rule": float((v.flags[at] != 0).mean())}
    return out


def baselines(s: Series, v: Validation) -> dict[str, F64]:
    """Naive fills for every interval, from the intervals validation left usable."""
    x = s.import_kwh
    usable = ~np.isnan(x) & ((v.flags & np.uint32(REPLACE)) == 0)
    xu = np.where(usable, x, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(xu, axis=1) / usable.sum(axis=1)
    m, n = x.shape
    last = np.maximum.accumulate(np.where(usable, np.arange(n), -1), axis=1)
    hold = np.where(last >= 0, np.take_along_axis(np.nan_to_num(xu), np.maximum(last, 0), axis=1),
                    mean[:, None])
    slot_ids, slot = np.unique(s.parts.minute, return_inverse=True)
    sums = np.zeros((m, slot_ids.size))
    cnt = np.zeros((m, slot_ids.size))
    np.add.at(sums.T, slot, np.nan_to_num(xu).T)
    np.add.at(cnt.T, slot, usable.T)
    with np.errstate(invalid="ignore", divide="ignore"):
        slot_mean = np.where(cnt > 0, sums / cnt, mean[:, None])[:, slot]
    return {"meter_mean": np.broadcast_to(mean[:, None], (m, n)), "hold": hold, "slot_mean": slot_mean}


def _errors(est: F64, true: F64, mask: npt.NDArray[np.bool_]) -> dict[str, float]:
    e, t = est[mask], true[mask]
    r, a, ln = runs(mask)
    run_err = sum(abs(float(est[i, j:j + k].sum() - true[i, j:j + k].sum()))
                  for i, j, k in zip(r.tolist(), a.tolist(), ln.tolist(), strict=True))
    total = float(t.sum())
    nan = float("nan")
    return {"mae": float(np.mean(np.abs(e - t))), "run_energy_err": run_err / total if total else nan,
            "bias": float(e.sum() - total) / total if total else nan}


def score_estimates(e: Estimated, true: F64, inj: Injected, fills: dict[str, F64]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    known = ~np.isnan(true)
    for method in METHODS:
        mask = (e.method == method) & known
        key = str(method.name)
        row: dict[str, Any] = {"n": int(mask.sum()),
                               "n_on_fault": int((mask & (inj.truth != Fault.CLEAN)).sum())}
        if mask.any():
            row[key] = _errors(e.value, true, mask)
            for name, fill in fills.items():
                row[name] = _errors(fill, true, mask)
            # which faults (CLEAN: a rule's false alarm) the method filled, and how well
            row["mae_by_fault"] = {
                str(Fault(f).name): {"n": int((mask & (inj.truth == f)).sum()),
                                "mae": float(np.mean(np.abs(e.value - true)[mask & (inj.truth == f)]))}
                for f in np.unique(inj.truth[mask]).tolist()}
        out[key] = row
    out["NONE"] = {"n": int((e.method == Method.NONE).sum())}
    return out


def clean_alarms(ds: Dataset) -> dict[str, Any]:
    """The rules on the real data before injection: intervals, meters and meter-days flagged."""
    s = ds.series(ds.households.kwh)
    v = validate(s)
    present = int((~np.isnan(s.import_kwh)).sum())
    days = np.unique(s.parts.day)
    di = np.searchsorted(days, s.parts.day)
    out: dict[str, Any] = {"meters": s.shape[0], "intervals": present,
                           "meter_days": s.shape[0] * days.size}
    for o in v.outcomes:
        if not o.ran:
            out[str(o.rule.name)] = {"ran": False, "why_not": o.why_not}
            continue
        f = v.failed(o.rule)
        per_day = np.zeros((s.shape[0], days.size), dtype=bool)
        rr, cc = np.nonzero(f)
        per_day[rr, di[cc]] = True
        n_f = int(f.sum())
        out[str(o.rule.name)] = {"ran": True, "intervals": n_f, "share": _ratio(n_f, present),
                                 "meters": int(f.any(axis=1).sum()), "meter_days": int(per_day.sum())}
    return out


def evaluate(ds: Dataset, seed: int, plan: FaultPlan | None = None) -> dict[str, Any]:
    true = ds.households.kwh
    s0 = ds.series(true)
    inj = inject(true, s0.parts.day, seed, plan)
    s = Series(s0.ts_s, s0.step_s, s0.parts, inj.reported)
    v = validate(s)
    fills = baselines(s, v)
    est = {"export": estimate(s, v), "registers": estimate(s, v, register_at=inj.register_at)}
    return {"dataset": ds.name, "seed": seed, "meters": s.shape[0], "with_faults": int(inj.eligible.sum()),
            "events": len(inj.events), "rules": score_rules(v, inj), "faults": score_faults(v, inj),
            "estimation": {k: score_estimates(e, true, inj, fills) for k, e in est.items()}}


def _stat(vals: list[float], how: str) -> float:
    a = np.asarray([x for x in vals if x is not None and np.isfinite(x)], dtype=float)
    if not a.size:
        return float("nan")
    if how == "min":
        return float(a.min())
    return float(a.max()) if how == "max" else float(np.median(a))


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Over seeds: per rule precision/recall (median, min) and FPR (median, max); per fault
    the caught share (median, min); per variant and method the median error and baselines."""
    rules: dict[str, Any] = {}
    for name in RULES:
        rows = [res["rules"][name] for res in results]
        if not rows[0]["ran"]:
            rules[name] = {"ran": False, "why_not": rows[0]["why_not"], "positives": rows[0]["positives"]}
            continue
        rules[name] = {"ran": True, "positives": int(np.median([r["positives"] for r in rows])),
                       "fp_clean": int(np.median([r["fp_clean"] for r in rows])),
                       "fp_other": int(np.median([r["fp_other"] for r in rows]))}
        for k, worst in (("precision", "min"), ("recall", "min"), ("fpr", "max")):
            vals = [r[k] for r in rows]
            rules[name][k] = {"median": _stat(vals, "median"), worst: _stat(vals, worst)}
    faults: dict[str, Any] = {}
    for f in results[0]["faults"]:
        rows = [res["faults"][f] for res in results if f in res["faults"]]
        faults[f] = {"rules": rows[0]["rules"], "rules_not_run": rows[0]["rules_not_run"],
                     "n": int(np.median([r["n"] for r in rows])),
                     "caught": {"median": _stat([r["caught"] for r in rows], "median"),
                                "min": _stat([r["caught"] for r in rows], "min")},
                     "any_rule": _stat([r["any_rule"] for r in rows], "median")}
    estimation: dict[str, Any] = {}
    for variant in VARIANTS:
        estimation[variant] = {}
        for method in METHODS:
            key = str(method.name)
            rows = [res["estimation"][variant][key] for res in results]
            cell: dict[str, Any] = {"n": int(np.median([r["n"] for r in rows]))}
            for who in (key, *BASELINES):
                have = [r[who] for r in rows if who in r]
                if have:
                    cell[who] = {k: _stat([h[k] for h in have], "median") for k in have[0]}
            kinds = sorted({f for r in rows for f in r.get("mae_by_fault", {})})
            cell["mae_by_fault"] = {f: _stat([r["mae_by_fault"][f]["mae"] for r in rows
                                              if f in r.get("mae_by_fault", {})], "median")
                                    for f in kinds}
            estimation[variant][key] = cell
        estimation[variant]["NONE"] = int(np.median([res["estimation"][variant]["NONE"]["n"]
                                                     for res in results]))
    return {"runs": len(results), "seeds": [r["seed"] for r in results], "rules": rules,
            "faults": faults, "estimation": estimation}
