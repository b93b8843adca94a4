"""Write one analysis run (a Feed's Report) into the results tables, in one transaction.

Either the whole run is visible or none of it: the API never sees a half-written run. Large
tables (interval losses, every meter's score) go through binary COPY into ON COMMIT DROP
staging tables and one INSERT ... SELECT each, which turns NaN into NULL and builds the
evidence JSONB on the server (no per-row Python). Rows depend only on the Feed and Report, so
the same data gives the same rows; `input_sha256` records which data that was.
Tables: cloud/store/migrations/0030_analytics_results.sql.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from cloud.analytics.data import rows as res
from cloud.analytics.pipeline.feed import Feed
from cloud.analytics.pipeline.score import INDICATOR_NAMES
from cloud.analytics.pipeline.stages import Report
from cloud.store.pgcopy.encode import Col, encode

_PG = {"text": 'text COLLATE "C"', "float8": "float8", "int8": "int8", "int4": "int4",
       "int2": "int2", "timestamptz": "timestamptz"}
_LOSS_FIELDS = ("energy_in_wh", "energy_out_wh", "loss_wh", "loss_pct", "technical_wh", "ntl_wh",
                "ntl_sigma_wh", "completeness", "revenue_at_risk")
_PERIOD_FIELDS = (*_LOSS_FIELDS, "estimated_wh")  # over the period only: not per interval
_RAW = ("flags", "export_no_pv", "bypass", "neutral", "change_point", "change_point_drop",
        "peer_dev", "localisation", "comms_drop", "observer", "observer_coef", "observer_own_change",
        "balance_timing")


@dataclass(frozen=True)
class RunMeta:
    period_start: datetime
    period_end: datetime
    regions: Sequence[str] | None
    started_at: datetime
    parameters: dict[str, Any]
    seconds: dict[str, float]


def _text(name: str, ids: Sequence[str], codes: np.ndarray) -> Col:
    return Col(name, "text", codes.astype(np.int64), dictionary=tuple(i.encode() for i in ids))


def _f(name: str, a: np.ndarray) -> Col:
    return Col(name, "float8", np.ascontiguousarray(a, np.float64).ravel())


def _stage(cur: psycopg.Cursor[Any], table: str, cols: list[Col]) -> None:
    cur.execute(f"CREATE TEMP TABLE {table} ({', '.join(f'{c.name} {_PG[c.pgtype]}' for c in cols)})"
                " ON COMMIT DROP")
    if len(cols[0].values) == 0:
        return
    with cur.copy(f"COPY {table} ({', '.join(c.name for c in cols)}) FROM STDIN (FORMAT BINARY)") as cp:
        for piece in encode(cols):
            cp.write(piece)


def _nn(c: str) -> str:
    return f"nullif({c}, 'NaN')"


def store_report(conn: psycopg.Connection[Any], feed: Feed, rep: Report, meta: RunMeta) -> int:
    """Insert the run and all its rows; return the new run_id."""
    topo, t0, step = feed.topology, feed.t0_s, feed.step_s
    k = feed.n_instants
    expected = sum(a.present.size for a in (feed.customers, feed.balance, feed.feeders))
    present = sum(int(a.present.sum()) for a in (feed.customers, feed.balance, feed.feeders))
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO analysis_runs (period_start, period_end, step_s, regions, started_at,"
            " finished_at, parameters, meters, transformers, feeders, expected_readings,"
            " present_readings, completeness, input_sha256, seconds)"
            " VALUES (%s, %s, %s, %s, %s, now(), %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING run_id",
            [meta.period_start, meta.period_end, step, list(meta.regions) if meta.regions else None,
             meta.started_at, json.dumps(meta.parameters), len(topo.meter_ids),
             len(topo.transformer_ids), len(topo.feeder_ids), expected, present,
             present / expected if expected else 0.0, res.feed_digest(feed), json.dumps(meta.seconds)])
        row = cur.fetchone()
        assert row is not None
        run_id = int(row[0])
        _write_loss(cur, run_id, res.loss_levels(feed, rep), t0, step)
        _write_suspects(cur, run_id, feed, rep)
        _write_quality(cur, run_id, feed, rep)
        _write_outages(cur, run_id, feed, rep, k)
        _write_regions(cur, run_id, feed, rep)
    return run_id


def _write_loss(cur: psycopg.Cursor[Any], run_id: int, levels: list[res.LevelLoss], t0: int,
                step: int) -> None:
    cols_p: list[list[Col]] = []
    for lv in levels:
        e = len(lv.ids)
        t = lv.interval["loss_wh"].shape[1] if e else 0
        ent = np.repeat(np.arange(e), t)
        start_us = (t0 + np.tile(np.arange(t), e) * step).astype(np.int64) * 1_000_000
        cols = [_text("level", [lv.level], np.zeros(e * t, np.int64)),
                _text("entity_id", lv.ids or [""], ent),
                Col("interval_start", "timestamptz", start_us),
                *[_f(f, lv.interval[f]) for f in _LOSS_FIELDS],
                Col("low_confidence", "int2", lv.interval["low_confidence"].ravel().astype(np.int16))]
        cols_p.append([_text("level", [lv.level], np.zeros(e, np.int64)),
                       _text("entity_id", lv.ids or [""], np.arange(e)),
                       *[_f(f, lv.period[f]) for f in _PERIOD_FIELDS],
                       Col("low_confidence", "int2", lv.period["low_confidence"].astype(np.int16))])
        name = f"stage_loss_i_{lv.level}"
        _stage(cur, name, cols)
        cur.execute(
            f"INSERT INTO analysis_loss_intervals (run_id, level, entity_id, interval_start, "
            f"{', '.join(_LOSS_FIELDS)}, low_confidence) SELECT %s, level, entity_id, interval_start, "
            f"{', '.join(_nn(f) for f in _LOSS_FIELDS)}, low_confidence <> 0 FROM {name}", [run_id])
    for lv, cols in zip(levels, cols_p, strict=True):
        name = f"stage_loss_p_{lv.level}"
        _stage(cur, name, cols)
        cur.execute(
            f"INSERT INTO analysis_loss (run_id, level, entity_id, {', '.join(_PERIOD_FIELDS)}, "
            f"low_confidence) SELECT %s, level, entity_id, "
            f"{', '.join(_nn(f) for f in _PERIOD_FIELDS)}, low_confidence <> 0 FROM {name}",
            [run_id])


def _write_suspects(cur: psycopg.Cursor[Any], run_id: int, feed: Feed, rep: Report) -> None:
    topo, sus = feed.topology, rep.suspects
    n = len(topo.meter_ids)
    rank = res.suspect_ranking(topo.meter_ids, sus.score)
    names = res.strongest(sus.evidence)
    strong_codes = np.array([len(INDICATOR_NAMES) if s is None else INDICATOR_NAMES.index(s) for s in names])
    cols = [_text("meter_id", topo.meter_ids, np.arange(n)),
            _text("transformer_id", topo.transformer_ids or [""], topo.tx_of),
            Col("rank", "int4", rank.astype(np.int32)), _f("score", sus.score),
            _f("estimated_wh", sus.estimated_wh), _f("allocated_wh", sus.allocated_wh),
            *[_f(f"e_{nm}", sus.evidence[:, j]) for j, nm in enumerate(INDICATOR_NAMES)],
            *[_f(f"r_{nm}", sus.raw[nm]) for nm in _RAW],
            Col("p_first", "int8", sus.period[:, 0].astype(np.int64)),
            Col("p_last", "int8", sus.period[:, 1].astype(np.int64)),
            _text("strongest", [*INDICATOR_NAMES, "none"], strong_codes)]
    _stage(cur, "stage_suspects", cols)
    ev = ", ".join(f"'{nm}', round({_nn('e_' + nm)}::numeric, 6)" for nm in INDICATOR_NAMES)
    raw = ", ".join(f"'{nm}', {_nn('r_' + nm)}" for nm in _RAW)
    t0 = datetime.fromtimestamp(feed.t0_s, UTC)
    cur.execute(
        "INSERT INTO analysis_suspects (run_id, meter_id, transformer_id, rank, score, estimated_wh,"
        " allocated_wh, evidence) SELECT %(run)s, meter_id, transformer_id, rank, score,"
        f" {_nn('estimated_wh')}, {_nn('allocated_wh')}, jsonb_build_object("
        f"'strongest', nullif(strongest, 'none'), 'evidence', jsonb_build_object({ev}),"
        f" 'indicators', jsonb_build_object({raw}), 'period', CASE WHEN p_first >= 0 THEN"
        " jsonb_build_object('from', %(t0)s::timestamptz + p_first * %(step)s * interval '1 second',"
        " 'to', %(t0)s::timestamptz + (p_last + 1) * %(step)s * interval '1 second') END)"
        " FROM stage_suspects", {"run": run_id, "t0": t0, "step": feed.step_s})


def _ts(feed: Feed, k: float) -> datetime:
    return datetime.fromtimestamp(feed.t0_s + int(k) * feed.step_s, UTC)


def _write_quality(cur: psycopg.Cursor[Any], run_id: int, feed: Feed, rep: Report) -> None:
    topo = feed.topology
    rows: list[tuple[Any, ...]] = []
    for x, (peak, n_over, longest, start) in enumerate(rep.overload):
        if n_over > 0:
            rows.append(("overload", "transformer", topo.transformer_ids[x], float(peak), int(n_over),
                         _ts(feed, start), _ts(feed, start + longest),
                         json.dumps({"longest_run_intervals": int(longest)})))
    for m in np.flatnonzero(np.nan_to_num(rep.voltage[:, 0]) > 0):
        share, vmin, vmax = rep.voltage[m]
        rows.append(("voltage", "meter", topo.meter_ids[m], float(share), None, None, None,
                     json.dumps({"v_min": round(float(vmin), 2), "v_max": round(float(vmax), 2)})))
    for tx in np.flatnonzero(np.nan_to_num(rep.imbalance[:, 1]) > 0):
        mean, share = rep.imbalance[tx]
        rows.append(("imbalance", "transformer", topo.transformer_ids[tx], float(mean), None, None, None,
                     json.dumps({"share_above_limit": round(float(share), 6), "limit": 0.2})))
    with cur.copy("COPY analysis_power_quality (run_id, kind, level, entity_id, value, intervals,"
                  " started_at, ended_at, details) FROM STDIN") as cp:
        for r in rows:
            cp.write_row((run_id, *r))


def _write_outages(cur: psycopg.Cursor[Any], run_id: int, feed: Feed, rep: Report, k: int) -> None:
    topo = feed.topology
    with cur.copy("COPY analysis_outages (run_id, level, entity_id, started_at, ended_at, instants)"
                  " FROM STDIN") as cp:
        for level, g, s, e in sorted(rep.outages.events):
            ids = topo.feeder_ids if level == "feeder" else topo.transformer_ids
            cp.write_row((run_id, level, ids[g], _ts(feed, s), _ts(feed, e) if e < k else None, e - s))


def _write_regions(cur: psycopg.Cursor[Any], run_id: int, feed: Feed, rep: Report) -> None:
    day = 86400 // feed.step_s
    for r, s in enumerate(res.region_summaries(rep, day)):
        cur.execute(
            "INSERT INTO analysis_regions (run_id, region_id, energy_wh, peak_interval_wh, peak_at,"
            " daily_wh, profile_wh, forecast_wh, holdout_mae_wh, holdout_mape_pct)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [run_id, feed.topology.region_ids[r], s.energy_wh, s.peak_interval_wh,
             None if s.peak_index is None else _ts(feed, s.peak_index), s.daily_wh, s.profile_wh,
             s.forecast_wh, s.holdout_mae_wh, s.holdout_mape_pct])
