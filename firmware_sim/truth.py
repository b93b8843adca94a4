"""Ground truth: who stole how much, when, and what the technical losses really were.

The file is what theft-detection and loss analytics are scored against. Energy identity it
satisfies for every transformer T over the simulated span (Wh, net = import - export):

    balance(T) - sum(customer meters of T)
        = technical_loss(T) + sum(stolen_wh of T's theft events)
          - sum(register_jump_wh of T's replacement events)

`stolen_wh` counts the energy the meter did not report (for rollback: the erased register
amount); it can be negative in part-days for h5/h6, which move consumption in time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from firmware_sim.data_faults import DataFaultPlan
from firmware_sim.simulation import EXP, IMP, Simulation

FORMAT_NAME = "wattrail-truth"
FORMAT_VERSION = 1
_CATEGORY = {
    **{f"h{i}": "fdi" for i in range(1, 7)},
    "bypass": "physical",
    "neutral": "physical",
    "reversed_ct": "physical",
    "magnetic": "tamper",
    "cover_open": "tamper",
    "rollback": "tamper",
    "replacement": "operational",
}


def _iso(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).isoformat().replace("+00:00", "Z")


def build_truth(sim: Simulation, data: DataFaultPlan | None = None) -> dict[str, Any]:
    """The ground truth for everything integrated so far (up to `sim.minute`); with `data`,
    also its meter data faults (`data_faults`: meter, kind, start, end, params) that started
    by then (without, the file is what it always was)."""
    grid = sim.grid
    events: list[dict[str, Any]] = []
    for i, ev in enumerate(sim.theft.events):
        if ev.start_min >= sim.minute:
            continue  # not started yet: nothing to score
        c = grid.customers[ev.customer]
        events.append(
            {
                "meter_id": ev.meter_id,
                "customer_id": c.customer_id,
                "transformer_id": c.transformer_id,
                "type": ev.kind,
                "category": _CATEGORY[ev.kind],
                "is_theft": ev.is_theft,
                "start": _iso(ev.start_min),
                "end": _iso(min(ev.end_min, sim.minute)),
                "start_ms": ev.start_min * 60_000,
                "end_ms": min(ev.end_min, sim.minute) * 60_000,
                "ongoing": ev.end_min > sim.minute,
                "params": ev.params,
                "stolen_wh": round(float(sim.stolen_wh[i]), 3),
                "register_jump_wh": round(float(sim.jump_wh[i]), 3),
            }
        )
    net_bal = sim.tx_reg[:, IMP] - sim.tx_reg[:, EXP]
    out: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "seed": grid.seed,
        "start": _iso(sim.start_minute),
        "end": _iso(sim.minute),
        "events": events,
        "transformers": [
            {
                "transformer_id": t.transformer_id,
                "technical_loss_wh": round(float(sim.loss_wh[k]), 3),
                "balance_net_wh": round(float(net_bal[k]), 3),
            }
            for k, t in enumerate(grid.transformers)
        ],
        "totals": {
            "technical_loss_wh": round(float(sim.loss_wh.sum()), 3),
            "stolen_wh": round(float(sum(e["stolen_wh"] for e in events if e["is_theft"])), 3),
            "thieves": len({e["meter_id"] for e in events if e["is_theft"]}),
        },
    }
    if data is not None:
        out["data_faults"] = data.truth(until_s=sim.minute * 60.0)
    return out


def write_truth(sim: Simulation, path: str | Path, data: DataFaultPlan | None = None) -> None:
    """Write atomically: a reader never sees half a file while the simulator keeps running."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(build_truth(sim, data), indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def stolen_by_transformer(sim: Simulation) -> np.ndarray:
    """(X,) stolen Wh per transformer minus replacement jumps: the right side of the identity
    above without the technical loss, for tests and reports."""
    index = {t.transformer_id: k for k, t in enumerate(sim.grid.transformers)}
    out = np.zeros(len(sim.grid.transformers))
    for i, ev in enumerate(sim.theft.events):
        k = index[sim.grid.customers[ev.customer].transformer_id]
        out[k] += sim.stolen_wh[i] if ev.is_theft else -sim.jump_wh[i]
    return out
