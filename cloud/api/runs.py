"""Which analysis run a report reads: the one asked for, or the latest.

Runs are immutable once written (cloud/analytics/data/write.py writes each in one
transaction), so a client that pins `run_id` gets the same answer every time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from cloud.api.deps import ConnDep
from cloud.api.listing import one
from cloud.api.problems import ProblemError


class RunPublic(BaseModel):
    run_id: int
    period_start: datetime
    period_end: datetime
    step_s: int = Field(description="interval length of the run's series")
    regions: list[str] | None = Field(description="regions analysed; null = all")
    started_at: datetime
    finished_at: datetime
    meters: int
    transformers: int
    feeders: int
    expected_readings: int
    present_readings: int
    completeness: float = Field(description="present / expected readings, 0..1")
    input_sha256: str = Field(description="hex digest of the analysed data: equal means same input")
    parameters: dict[str, Any]
    notes: list[str] = Field(default_factory=list, description=(
        "what the data lacked and what the run assumed instead (cadence, export not measured, "
        "power factor assumed, technical loss fitted)"))
    not_computed: dict[str, str] = Field(default_factory=dict, description=(
        "indicator -> why the run could not compute it (e.g. bypass: needs voltage and current)"))


RUN_COLS = ("run_id, period_start, period_end, step_s, regions, started_at, finished_at, meters, "
            "transformers, feeders, expected_readings, present_readings, completeness, input_sha256, "
            "parameters")


def run_public(r: dict[str, Any]) -> RunPublic:
    params = r.get("parameters") or {}
    return RunPublic(**{**r, "input_sha256": bytes(r["input_sha256"]).hex(),
                        "notes": list(params.get("notes", [])),
                        "not_computed": dict(params.get("not_computed", {}))})


async def resolve_run(conn: ConnDep, run_id: int | None) -> dict[str, Any]:
    if run_id is None:
        r = await one(conn, f"SELECT {RUN_COLS} FROM analysis_runs ORDER BY run_id DESC LIMIT 1")
        if r is None:
            raise ProblemError(404, "no analysis run yet: run the analytics first "
                               "(`wattrail analyze`)", kind="no-analysis-run")
        return r
    r = await one(conn, f"SELECT {RUN_COLS} FROM analysis_runs WHERE run_id = %s", [run_id])
    if r is None:
        raise ProblemError(404, f"no analysis run {run_id}; list them at /v1/analysis/runs",
                           kind="not-found")
    return r
