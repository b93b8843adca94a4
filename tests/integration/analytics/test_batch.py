"""The database side of the analytics: fetch -> pipeline -> stored results -> evaluate.

One small simulated grid (80 meters, 2 regions, 2 days at 15 min, 20 % thieves, 2 % missing
readings, one transformer's customers silent for 10 instants) is loaded once per module."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import typer
from typer.testing import CliRunner

from cloud.analytics.batch import analyze
from cloud.analytics.data.fetch import CLASSES, MODULUS_BY_MODEL, FetchError, detect_cadence, fetch_feed
from cloud.analytics.evaluation.stored_run import evaluate_run
from cloud.analytics.pipeline import stages as pipeline
from firmware_sim.grid import CUSTOMER_KINDS
from wattrail.commands.analytics import mount

from .conftest import END, OUTAGE, START, STEP, K, Loaded

pytestmark = pytest.mark.integration

_ARRAYS = ("import_wh", "export_wh", "import_varh", "export_varh", "v", "i", "i_n", "p_w", "q_var",
           "status", "present", "polled", "offset_s")
# simfeed leaves these NaN; a real balance / head meter reports them (MeterReader does)
_SIMFEED_BLANK = {("balance", "i_n"), ("feeders", "i"), ("feeders", "i_n")}
_RESULT_TABLES = ("analysis_loss", "analysis_loss_intervals", "analysis_suspects",
                  "analysis_power_quality", "analysis_outages", "analysis_regions")


def _rows(conn: psycopg.Connection, table: str, run_id: int) -> list[tuple[Any, ...]]:
    cols = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND column_name <> 'run_id'"
        " ORDER BY ordinal_position", [table])]
    return conn.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE run_id = %s ORDER BY 1, 2, 3, 4",
                        [run_id]).fetchall()


def test_fetch_gives_the_simfeed_feed(loaded: Loaded) -> None:
    with psycopg.connect(loaded.dsn, autocommit=True) as conn:
        feed, stats = fetch_feed(conn, START, END, step_s=STEP)
    sim = loaded.sim_feed
    assert CLASSES == CUSTOMER_KINDS  # class indices agree with the simulator's
    assert (feed.t0_s, feed.step_s, feed.n_instants) == (sim.t0_s, sim.step_s, K)
    t, s = feed.topology, sim.topology
    assert (t.meter_ids, t.transformer_ids, t.feeder_ids, t.region_ids) == (
        s.meter_ids, s.transformer_ids, s.feeder_ids, s.region_ids)
    for name in ("tx_of", "feeder_of_tx", "region_of_feeder", "cls", "phases", "has_pv"):
        np.testing.assert_array_equal(getattr(t, name), getattr(s, name), err_msg=name)
    for name in ("tariff_per_kwh", "rating_va", "no_load_w", "load_loss_w"):
        np.testing.assert_allclose(getattr(t, name), getattr(s, name), rtol=1e-12, err_msg=name)
    for role in ("customers", "balance", "feeders"):
        got, want = getattr(feed, role), getattr(sim, role)
        for name in _ARRAYS:
            a, b = getattr(got, name), getattr(want, name)
            if (role, name) in _SIMFEED_BLANK:
                assert np.isnan(b).all() and (np.isnan(a) == ~got.present[..., None] if a.ndim == 3
                                              else np.isnan(a) == ~got.present).all()
                continue
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, equal_nan=True, err_msg=f"{role}.{name}")
    # no fault plan in simfeed: modulus 0 there; the DB side takes it from the meter model
    assert set(np.unique(feed.customers.modulus_wh)) <= set(MODULUS_BY_MODEL.values())
    # the duplicate later poll of one instant was fetched but lost to the exact one
    present = sum(int(a.present.sum()) for a in (feed.customers, feed.balance, feed.feeders))
    assert stats.rows > stats.used == present


def test_pipeline_is_the_same_on_fetched_and_simulated(loaded: Loaded) -> None:
    with psycopg.connect(loaded.dsn, autocommit=True) as conn:
        feed, _ = fetch_feed(conn, START, END, step_s=STEP)
    feed.customers.modulus_wh[:] = 0.0  # as simfeed without faults (no register wraps here anyway)
    a, b = pipeline.run(feed), pipeline.run(loaded.sim_feed)
    np.testing.assert_allclose(a.suspects.score, b.suspects.score, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.ntl_wh, b.ntl_wh, rtol=1e-9)
    np.testing.assert_allclose(a.balance.loss_wh, b.balance.loss_wh, rtol=1e-9, equal_nan=True)
    assert a.outages.events == b.outages.events


def test_the_step_defaults_to_the_readings_cadence_and_notes_are_stored(loaded: Loaded) -> None:
    with psycopg.connect(loaded.dsn, autocommit=True) as conn:
        cad = detect_cadence(conn, START, END)
        assert cad.step_s == STEP and not cad.mixed and cad.sampled_meters >= 80
        stages: list[str] = []
        res = analyze(conn, START, END, progress=stages.append)
        assert stages[0] == "cadence" and res.feed.step_s == STEP
        params = conn.execute("SELECT parameters FROM analysis_runs WHERE run_id = %s",
                              [res.run_id]).fetchone()[0]
        assert params["step_s"] == STEP and params["notes"] == list(res.notes)
        # the simulator measures everything: every indicator ran
        assert params["not_computed"] == {}
        # half of the meters read every other instant: mixed cadences, analysed at the coarser
        conn.execute("CREATE TEMP TABLE keep AS SELECT * FROM readings")
        try:
            conn.execute("DELETE FROM readings r USING (SELECT DISTINCT meter_id FROM readings"
                         " ORDER BY meter_id LIMIT 45) m WHERE r.meter_id = m.meter_id AND"
                         " (extract(epoch FROM r.ts)::bigint / %s) %% 2 = 1", [STEP])
            cad = detect_cadence(conn, START, END)
            assert cad.mixed and cad.step_s == 2 * STEP
            assert "mixed cadences" in (cad.note() or "")
        finally:
            conn.execute("DELETE FROM readings")
            conn.execute("INSERT INTO readings SELECT * FROM keep")


def test_analyze_stores_a_reproducible_run(loaded: Loaded) -> None:
    with psycopg.connect(loaded.dsn, autocommit=True) as conn:
        stages: list[str] = []
        r1 = analyze(conn, START, END, step_s=STEP, progress=stages.append)
        r2 = analyze(conn, START, END, step_s=STEP)
        assert stages == ["fetch", "kernels", "write"] and r2.run_id > r1.run_id
        for table in _RESULT_TABLES:
            rows = _rows(conn, table, r1.run_id)
            assert rows == _rows(conn, table, r2.run_id), table
        run = conn.execute("SELECT meters, transformers, feeders, expected_readings, present_readings,"
                           " completeness, input_sha256, regions FROM analysis_runs WHERE run_id = ANY(%s)"
                           " ORDER BY run_id", [[r1.run_id, r2.run_id]]).fetchall()
        assert run[0] == run[1]
        meters, n_tx, n_fd, expected, present, completeness, _, regions = run[0]
        assert (meters, n_tx, n_fd, regions) == (80, 4, 2, None)
        assert expected == (80 + 4 + 2) * K and present == expected - len(loaded.dropped)
        assert completeness == pytest.approx(present / expected)
        # every customer ranked once, 1..N
        ranks = [r[0] for r in conn.execute("SELECT rank FROM analysis_suspects WHERE run_id = %s"
                                            " ORDER BY rank", [r1.run_id])]
        assert ranks == list(range(1, 81))
        top = conn.execute("SELECT score, evidence FROM analysis_suspects WHERE run_id = %s AND rank = 1",
                           [r1.run_id]).fetchone()
        assert top is not None and set(top[1]) == {"strongest", "evidence", "indicators", "period"}
        assert top[0] == pytest.approx(float(r1.report.suspects.score.max()))
        # loss rows: period per entity and level, intervals per entity x (K - 1)
        counts = dict(conn.execute("SELECT level, count(*) FROM analysis_loss_intervals WHERE run_id = %s"
                                   " GROUP BY level", [r1.run_id]).fetchall())
        assert counts == {"transformer": 4 * (K - 1), "feeder": 2 * (K - 1), "region": 2 * (K - 1)}
        ntl = conn.execute("SELECT entity_id, ntl_wh FROM analysis_loss WHERE run_id = %s AND"
                           " level = 'transformer' ORDER BY ntl_wh DESC NULLS LAST", [r1.run_id]).fetchall()
        tx = r1.feed.topology.transformer_ids
        assert [t for t, _ in ntl] == [tx[i] for i in np.argsort(-r1.report.ntl_wh, kind="stable")]
        # the silent transformer is the one outage, localised to it
        out = conn.execute("SELECT level, entity_id, started_at, ended_at FROM analysis_outages"
                           " WHERE run_id = %s", [r1.run_id]).fetchall()
        assert out == [("transformer", loaded.outage_tx, START + timedelta(seconds=OUTAGE[0] * STEP),
                        START + timedelta(seconds=OUTAGE[1] * STEP))]
        regions = conn.execute("SELECT region_id, array_length(daily_wh, 1), array_length(profile_wh, 1),"
                               " array_length(forecast_wh, 1) FROM analysis_regions WHERE run_id = %s"
                               " ORDER BY 1", [r1.run_id]).fetchall()
        assert [r[1:] for r in regions] == [(2, 96, 96)] * 2


def test_region_filter_and_bad_requests(loaded: Loaded) -> None:
    with psycopg.connect(loaded.dsn, autocommit=True) as conn:
        region = loaded.sim_feed.topology.region_ids[0]
        res = analyze(conn, START, END, step_s=STEP, regions=[region])
        topo = loaded.sim_feed.topology
        mine = {topo.meter_ids[m] for m in range(len(topo.meter_ids))
                if topo.region_of_feeder[topo.feeder_of_tx[topo.tx_of[m]]] == 0}
        assert set(res.feed.topology.meter_ids) == mine and res.feed.topology.region_ids == [region]
        levels = dict(conn.execute("SELECT level, count(*) FROM analysis_loss WHERE run_id = %s GROUP BY 1",
                                   [res.run_id]).fetchall())
        assert levels["region"] == 1
        assert conn.execute("SELECT regions FROM analysis_runs WHERE run_id = %s",
                            [res.run_id]).fetchone() == ([region],)
        with pytest.raises(FetchError, match="unknown region"):
            fetch_feed(conn, START, END, regions=["NOPE"])
        with pytest.raises(FetchError, match="whole number"):
            fetch_feed(conn, START, END + timedelta(seconds=1))


def test_evaluate_scores_the_stored_run(loaded: Loaded, tmp_path: Path) -> None:
    truth = dict(loaded.truth)
    out_start = START + timedelta(seconds=OUTAGE[0] * STEP)
    truth["outages"] = [{"level": "transformer", "id": loaded.outage_tx, "start": out_start.isoformat(),
                         "end": (START + timedelta(seconds=OUTAGE[1] * STEP)).isoformat()},
                        {"level": "feeder", "id": "nowhere", "start": START.isoformat(), "end": None}]
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(truth))
    app = typer.Typer()
    mount(app)
    runner = CliRunner()
    res = runner.invoke(app, ["analyze", "--from", START.isoformat(), "--to", END.isoformat(),
                              "--dsn", loaded.dsn, "--top", "3"])
    assert res.exit_code == 0, res.output
    assert "worst transformers by NTL" in res.output and "top suspects" in res.output
    res = runner.invoke(app, ["evaluate", "--truth", str(path), "--dsn", loaded.dsn,
                              "--json", str(tmp_path / "eval.json")])
    assert res.exit_code == 0, res.output
    assert "all" in res.output or "any" in res.output
    result = json.loads((tmp_path / "eval.json").read_text())
    with psycopg.connect(loaded.dsn, autocommit=True) as conn:
        direct = evaluate_run(conn, truth)
        run_id = conn.execute("SELECT max(run_id) FROM analysis_runs").fetchone()[0]  # type: ignore[index]
    assert result["run_id"] == direct["run_id"] == run_id
    thieves = {e["meter_id"] for e in truth["events"] if e["is_theft"]}
    assert result["ranking"]["any"]["n"] == len(thieves) > 0
    assert result["ranking"]["any"]["auc"] > 0.8  # a sanity floor on a tiny grid, not the target
    assert len(result["ntl"]["per_transformer"]) == 4
    assert result["outages"] == {"detected": 1, "true": 2, "precision": 1.0, "recall": 0.5,
                                 "delay_s_median": 0.0, "delay_s_max": 0.0}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "other"}))
    res = runner.invoke(app, ["evaluate", "--truth", str(bad), "--dsn", loaded.dsn])
    assert res.exit_code == 1 and "wattrail-truth" in res.output


def test_suspects_and_loss_lists_of_a_stored_run(loaded: Loaded) -> None:
    app = typer.Typer()
    mount(app)
    with psycopg.connect(loaded.dsn, autocommit=True) as conn:
        res = analyze(conn, START, END, step_s=STEP)
        want = conn.execute("SELECT meter_id FROM analysis_suspects WHERE run_id = %s ORDER BY rank"
                            " LIMIT 5", [res.run_id]).fetchall()
    runner = CliRunner()
    j = runner.invoke(app, ["suspects", "list", "--dsn", loaded.dsn, "--run", str(res.run_id),
                            "--top", "5", "--format", "json"])
    assert j.exit_code == 0, j.output
    doc = json.loads(j.output)
    assert doc["run_id"] == res.run_id and [r["meter_id"] for r in doc["rows"]] == [w[0] for w in want]
    assert [r["rank"] for r in doc["rows"]] == [1, 2, 3, 4, 5]
    c = runner.invoke(app, ["loss", "list", "--dsn", loaded.dsn, "--format", "csv", "--top", "3"])
    assert c.exit_code == 0, c.output
    lines = c.output.strip().splitlines()
    assert lines[0].startswith("entity_id,energy_in_wh,") and len(lines) == 4
    t = runner.invoke(app, ["loss", "list", "--dsn", loaded.dsn, "--level", "feeder"])
    assert t.exit_code == 0 and "loss per feeder" in t.output
    missing = runner.invoke(app, ["suspects", "list", "--dsn", loaded.dsn, "--run", "999999"])
    assert missing.exit_code == 1 and "no such analysis run" in missing.output
