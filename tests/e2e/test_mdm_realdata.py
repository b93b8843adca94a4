"""A utility's first day, on real households (../shared/realdata): an MDM grid CSV without
Modbus addressing, a half-hourly kWh readings CSV without export or kvarh, then `wattrail
analyze` with no --step and `wattrail suspects list`. Skips, saying why, without the data."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cloud.analytics.evaluation.metrics import roc_auc
from wattrail.cli import app
from wattrail.evaluation import scenarios as realdata

pytestmark = pytest.mark.integration


def _scenario() -> realdata.Scenario:
    try:
        hh = realdata.load("lcl")
    except realdata.RealDataMissing as exc:
        pytest.skip(str(exc))
    return realdata.build("lcl", 4242, households=hh)


def test_an_mdm_export_of_real_households_gives_suspects_and_losses(db_dsn: str, tmp_path: Path) -> None:
    sc = _scenario()
    feed, topo = sc.feed, sc.feed.topology
    grid = tmp_path / "grid.csv"
    with grid.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["meter_id", "transformer_id", "kind", "tariff_per_kwh", "transformer_rating_kva",
                    "balance_meter_id"])
        for i, mid in enumerate(topo.meter_ids):
            x = int(topo.tx_of[i])
            w.writerow([mid, topo.transformer_ids[x], "residential", "0.25",
                        f"{topo.rating_va[x] / 1000:g}", f"BAL-{topo.transformer_ids[x]}"])
    readings = tmp_path / "readings.csv"
    t0 = datetime.fromtimestamp(feed.t0_s, UTC)
    bal_wh = np.diff(feed.balance.import_wh, axis=1)
    with readings.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["meter_id", "interval_start", "interval_minutes", "import_wh"])
        series = [(mid, sc.reported_kwh[i] * 1000.0) for i, mid in enumerate(topo.meter_ids)]
        series += [(f"BAL-{tid}", bal_wh[x]) for x, tid in enumerate(topo.transformer_ids)]
        for mid, wh in series:
            for k in np.flatnonzero(~np.isnan(wh)):  # an absent interval is no row
                w.writerow([mid, (t0 + timedelta(minutes=30 * int(k))).isoformat(), 30, f"{wh[k]:.3f}"])
    run = CliRunner()
    for args in (["db", "migrate"], ["topology", "import", str(grid)], ["readings", "import", str(readings)]):
        res = run.invoke(app, [*args, "--dsn", db_dsn])
        assert res.exit_code == 0, (args, res.output)
    end = t0 + timedelta(days=42)
    res = run.invoke(app, ["analyze", "--dsn", db_dsn, "--from", t0.strftime("%Y-%m-%dT%H:%M:%S"),
                           "--to", end.strftime("%Y-%m-%dT%H:%M:%S")])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "instants of 30 min" in out  # the cadence came from the data
    assert "export not measured" in out and "power factor 0.95" in out
    res = run.invoke(app, ["suspects", "list", "--dsn", db_dsn, "--top", "100", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["step_s"] == 1800 and doc["not_computed"]["bypass"].startswith("needs voltage")
    score = {r["meter_id"]: r["score"] for r in doc["rows"]}
    assert len(score) == len(topo.meter_ids)
    lab = sc.labels["any"]
    s = np.array([score[m] for m in topo.meter_ids])
    # the stored ranking separates the scenario's thieves well above chance
    assert roc_auc(s, lab) > 0.8
    res = run.invoke(app, ["loss", "list", "--dsn", db_dsn, "--format", "json"])
    rows = {r["entity_id"]: r for r in json.loads(res.output)["rows"]}
    for x, tid in enumerate(topo.transformer_ids):
        stolen = sc.stolen_wh[x]
        ntl, sigma = rows[tid]["ntl_wh"], rows[tid]["ntl_sigma_wh"]
        assert ntl is not None and sigma is not None
        assert abs(ntl - stolen) <= max(0.2 * abs(stolen), 3 * sigma), (tid, ntl, stolen, sigma)
