"""The archive checks' database side: what the readings say per meter (one SQL aggregate), the
archive as records, the connectivity input from the analytics' own fetch, the stored check and
its suspicions, and an accepted correction (logged, then the loss report recomputed).

`run_check` is what `wattrail archive check` calls; `accept` what the API's admin endpoint and
`wattrail archive accept` call. Neither a check nor anything else here changes the archive
except `accept`, and `accept` only with an actor and inside one transaction with its log row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg

from cloud.analytics.data.fetch import fetch_feed, instants
from cloud.archive import completeness, connectivity
from cloud.archive.completeness import (
    ArchiveRecord,
    ArchiveSnapshot,
    Finding,
    MeterSummary,
    TransformerRecord,
)
from cloud.store.archive_sql import METER_SUMMARY, UNKNOWN_METER_SERIES

Progress = Callable[[str], None]
RESET_WH = 1000.0  # a fall of the import register larger than this is a reset, not noise



def summaries(conn: psycopg.Connection[Any], start: datetime, end: datetime) -> list[MeterSummary]:
    """Per meter with valid readings in [start, end]: what `completeness.check` compares."""
    kinds = dict(conn.execute("SELECT meter_id, kind FROM meters").fetchall())
    out = []
    for mid, first, last, n, three, exp, peak_kw, peak_kva, resets in conn.execute(
            METER_SUMMARY, {"start": start, "end": end, "reset": RESET_WH}):
        out.append(MeterSummary(
            meter_id=mid, kind=kinds.get(mid), first_ts=float(first), last_ts=float(last),
            readings=int(n), phases_seen=3 if three else 1, export_wh=float(exp or 0.0),
            peak_kw=float(peak_kw) if peak_kw is not None else math.nan,
            peak_kva=float(peak_kva) if peak_kva is not None else math.nan, register_resets=int(resets)))
    return out


def snapshot(conn: psycopg.Connection[Any], now_ts: float) -> ArchiveSnapshot:
    tx = [TransformerRecord(*r) for r in conn.execute(
        "SELECT t.transformer_id, f.region_id, t.balance_meter_id, t.lat, t.lon FROM transformers t"
        " JOIN feeders f USING (feeder_id) ORDER BY t.transformer_id")]
    recs = []
    for r in conn.execute(
            "SELECT m.meter_id, c.customer_id, coalesce(c.transformer_id, m.transformer_id), f.region_id,"
            " c.class, coalesce(c.phases, m.phases), c.phase, c.tariff_per_kwh::float8, c.contract_kva,"
            " coalesce(c.is_special, false), coalesce(c.has_pv, false), c.lat, c.lon, m.serial,"
            " (SELECT count(*) FROM meter_installations i WHERE i.meter_id = m.meter_id),"
            " (SELECT extract(epoch FROM max(installed_on)) FROM meter_installations i"
            "   WHERE i.meter_id = m.meter_id)"
            " FROM meters m LEFT JOIN customers c ON c.customer_id = m.customer_id"
            " LEFT JOIN transformers t ON t.transformer_id = coalesce(c.transformer_id, m.transformer_id)"
            " LEFT JOIN feeders f ON f.feeder_id = t.feeder_id"
            " WHERE m.kind = 'customer' ORDER BY m.meter_id"):
        recs.append(ArchiveRecord(
            meter_id=r[0], customer_id=r[1], transformer_id=r[2], region_id=r[3], customer_class=r[4],
            phases=r[5], phase=r[6], tariff_per_kwh=r[7], contract_kva=r[8], is_special=r[9],
            has_pv=r[10], lat=r[11], lon=r[12], serial=r[13], installs=int(r[14]),
            last_install_ts=float(r[15]) if r[15] is not None else None))
    lonely = [(c, reg) for c, reg in conn.execute(
        "SELECT c.customer_id, f.region_id FROM customers c"
        " LEFT JOIN transformers t USING (transformer_id) LEFT JOIN feeders f ON f.feeder_id = t.feeder_id"
        " WHERE NOT EXISTS (SELECT 1 FROM meters m WHERE m.customer_id = c.customer_id)"
        " ORDER BY c.customer_id")]
    others = [r[0] for r in conn.execute("SELECT meter_id FROM meters WHERE kind <> 'customer'")]
    return ArchiveSnapshot(tx, recs, now_ts, lonely, others)


def connectivity_input(conn: psycopg.Connection[Any], start: datetime, end: datetime,
                       step_s: int) -> connectivity.ConnectivityInput:
    """The analytics' own Feed (the same snapping and missing-data rules) in the archive's
    assignment, with the recorded phase of single-phase customers added."""
    feed, _ = fetch_feed(conn, start, end, step_s=step_s)
    t = feed.topology
    phase = dict(conn.execute(
        "SELECT m.meter_id, c.phase FROM meters m JOIN customers c ON c.customer_id = m.customer_id"
        " WHERE m.kind = 'customer'").fetchall())
    cust = feed.customers
    reported3 = np.isfinite(cust.v[:, :, 1]).any(axis=1) | np.isfinite(cust.v[:, :, 2]).any(axis=1)
    phases = np.where(reported3, 3, 1).astype(np.int64)
    rec_phase = np.array([phase.get(m) if phase.get(m) is not None else -1 for m in t.meter_ids], np.int64)
    rec_phase = np.where(phases == 1, rec_phase, -1)
    bal = feed.balance
    return connectivity.ConnectivityInput(
        meter_ids=list(t.meter_ids), transformer_ids=list(t.transformer_ids),
        recorded_tx=np.asarray(t.tx_of, np.int64), recorded_phase=rec_phase, phases=phases,
        v=cust.v, i=cust.i, tx_v=bal.v,
        energy_wh=np.diff(cust.import_wh - np.nan_to_num(cust.export_wh), axis=1),
        tx_energy_wh=np.diff(bal.import_wh - np.nan_to_num(bal.export_wh), axis=1))


def with_unrecorded(conn: psycopg.Connection[Any], inp: connectivity.ConnectivityInput,
                    ids: list[str], t0_s: float, step_s: int) -> connectivity.ConnectivityInput:
    """`inp` plus meters that report but have no record (recorded_tx -1), their voltages and
    currents snapped to the same instants (nearest, within half a step): the analysis then
    says which transformer and phase their voltage matches. Energy is left out for them (no
    balance counts them)."""
    if not ids:
        return inp
    k = inp.v.shape[1]
    v = np.full((len(ids), k, 3), np.nan)
    i = np.full((len(ids), k, 3), np.nan)
    row_of = {m: j for j, m in enumerate(ids)}
    t_end = t0_s + (k - 1) * step_s
    for mid, ts, *vals in conn.execute(UNKNOWN_METER_SERIES, {
            "ids": ids, "start": datetime.fromtimestamp(t0_s - step_s / 2, UTC),
            "end": datetime.fromtimestamp(t_end + step_s / 2, UTC)}):
        kk = round((float(ts) - t0_s) / step_s)
        if 0 <= kk < k:
            v[row_of[mid], kk] = [np.nan if x is None else x for x in vals[:3]]
            i[row_of[mid], kk] = [np.nan if x is None else x for x in vals[3:]]
    three = np.isfinite(v[:, :, 1]).any(axis=1) | np.isfinite(v[:, :, 2]).any(axis=1)
    n_u = len(ids)
    cur_i = inp.i if inp.i is not None else np.full_like(inp.v, np.nan)
    e_u = None if inp.energy_wh is None else np.full((n_u, inp.energy_wh.shape[1]), np.nan)
    return connectivity.ConnectivityInput(
        meter_ids=[*inp.meter_ids, *ids], transformer_ids=inp.transformer_ids,
        recorded_tx=np.concatenate([inp.recorded_tx, np.full(n_u, -1, np.int64)]),
        recorded_phase=np.concatenate([inp.recorded_phase, np.full(n_u, -1, np.int64)]),
        phases=np.concatenate([inp.phases, np.where(three, 3, 1).astype(np.int64)]),
        v=np.concatenate([inp.v, v]), i=np.concatenate([cur_i, i]), tx_v=inp.tx_v,
        energy_wh=None if inp.energy_wh is None or e_u is None else np.concatenate([inp.energy_wh, e_u]),
        tx_energy_wh=inp.tx_energy_wh)


@dataclass
class CheckResult:
    check_id: int
    findings: list[Finding]
    suspicions: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


def _f(x: float) -> float | None:
    return round(float(x), 4) if np.isfinite(x) else None


def suspicions(res: connectivity.ConnectivityResult) -> list[dict[str, Any]]:
    """The ranked suspicions of a connectivity result, as stored and served."""
    out = []
    for rank, j in enumerate(res.suspects(), start=1):
        rp = int(res.recorded_phase[j])
        bp = int(res.best_phase[j])
        out.append({
            "rank": rank, "meter_id": res.meter_ids[j],
            "kind": "transformer" if res.tx_suspect[j] else "phase",
            "recorded_transformer_id": res.transformer_ids[res.recorded_tx[j]],
            "recorded_phase": rp if rp >= 0 else None,
            "suggested_transformer_id": res.transformer_ids[res.best_tx[j]],
            "suggested_phase": bp if bp >= 0 else None,
            "confidence": round(float(res.confidence[j]), 4),
            "evidence": {
                "r_recorded": _f(res.r_recorded[j]), "r_best_other": _f(res.r_best_other[j]),
                "best_other_transformer_id": (res.transformer_ids[res.other_tx[j]]
                                              if res.other_tx[j] >= 0 else None),
                "z": _f(res.z[j]), "phase_r": [_f(x) for x in res.phase_r[j]], "phase_z": _f(res.phase_z[j]),
                "balance_gain": _f(res.balance_gain[j]), "voltage_test": bool(res.voltage_ran[j]),
            },
        })
    return out


def run_check(conn: psycopg.Connection[Any], start: datetime, end: datetime, *, step_s: int = 900,
              settings: completeness.Settings | None = None,
              conn_settings: connectivity.Settings | None = None,
              progress: Progress | None = None) -> CheckResult:
    """Both analyses over [start, end], stored as one check; the archive is left as it is."""
    say = progress or (lambda _s: None)
    started = datetime.now(UTC)
    notes: list[str] = []
    say("summaries")
    summ = summaries(conn, start, end)
    now_ts = max((m.last_ts or 0.0 for m in summ), default=end.timestamp())
    snap = snapshot(conn, now_ts)
    known = {r.meter_id for r in snap.records} | set(snap.other_meters)
    unrecorded = sorted(m.meter_id for m in summ if m.meter_id not in known and m.readings > 0)
    say("connectivity")
    inp = connectivity_input(conn, start, end, step_s)
    inp = with_unrecorded(conn, inp, unrecorded, instants(start, end, step_s)[0], step_s)
    res = connectivity.analyse(inp, conn_settings)
    notes += res.notes
    sus = suspicions(res)  # unrecorded meters are placed, not suspected: no record to be wrong
    say("completeness")
    data_tx = {s["meter_id"]: s["suggested_transformer_id"] for s in sus if s["kind"] == "transformer"}
    placed = {inp.meter_ids[j]: (inp.transformer_ids[res.best_tx[j]], int(res.best_phase[j]),
                                 float(res.confidence[j]))
              for j in range(len(inp.meter_ids)) if inp.recorded_tx[j] < 0 and res.best_tx[j] >= 0}
    found = completeness.check(snap, summ, settings, suggest=placed, data_tx=data_tx)
    say("write")
    params = {"completeness": vars(settings or completeness.Settings()),
              "connectivity": vars(conn_settings or connectivity.Settings())}
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO archive_checks (started_at, finished_at, period_start, period_end, step_s,"
            " parameters, notes, findings, suspicions) VALUES (%s, now(), %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING check_id",
            [started, start, end, step_s, json.dumps(params), json.dumps(notes),
             len(found), len(sus)]).fetchone()
        assert row is not None
        cid = int(row[0])
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO archive_findings VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [(cid, n, f.kind, f.object_id, f.region_id, f.severity, json.dumps(f.evidence), f.fix)
                 for n, f in enumerate(found, start=1)])
            cur.executemany(
                "INSERT INTO archive_finding_counts VALUES (%s, %s, %s, %s)",
                [(cid, reg, kind, n) for reg, kinds in completeness.counts_by_region(found).items()
                 for kind, n in kinds.items()])
            cur.executemany(
                "INSERT INTO connectivity_suspicions (check_id, meter_id, rank, kind,"
                " recorded_transformer_id, recorded_phase, suggested_transformer_id, suggested_phase,"
                " confidence, evidence)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(cid, s["meter_id"], s["rank"], s["kind"], s["recorded_transformer_id"], s["recorded_phase"],
                  s["suggested_transformer_id"], s["suggested_phase"], s["confidence"],
                  json.dumps(s["evidence"])) for s in sus])
            # a newer check replaces the open suspicions of older ones
            cur.execute("UPDATE connectivity_suspicions SET status = 'superseded'"
                        " WHERE check_id < %s AND status = 'open'", [cid])
    return CheckResult(cid, found, sus, notes)


class CorrectionError(Exception):
    """The correction cannot be applied; the message says why and what to do."""


@dataclass(frozen=True)
class Correction:
    correction_id: int
    meter_id: str
    old: dict[str, Any]
    new: dict[str, Any]
    recompute_run_id: int | None


def accept(conn: psycopg.Connection[Any], meter_id: str, *, actor: str, check_id: int | None = None,
           comment: str = "", recompute: bool = True) -> Correction:
    """Apply the open suspicion of `meter_id` (of `check_id`, default the latest check that has
    one) to the archive, log it, and rerun the loss analysis over the latest run's period."""
    with conn.transaction():
        q = ("SELECT check_id, suggested_transformer_id, suggested_phase FROM connectivity_suspicions"
             " WHERE meter_id = %s AND status = 'open'")
        args: list[Any] = [meter_id]
        if check_id is not None:
            q += " AND check_id = %s"
            args.append(check_id)
        row = conn.execute(q + " ORDER BY check_id DESC LIMIT 1 FOR UPDATE", args).fetchone()
        if row is None:
            raise CorrectionError(
                f"no open connectivity suspicion for meter {meter_id!r}"
                + (f" in check {check_id}" if check_id is not None else "")
                + ": run `wattrail archive check` and pick one from `wattrail archive suspects`")
        cid, new_tx, new_phase = row
        cur = conn.execute(
            "SELECT c.customer_id, c.transformer_id, c.phase FROM meters m JOIN customers c"
            " ON c.customer_id = m.customer_id WHERE m.meter_id = %s FOR UPDATE OF c", [meter_id]).fetchone()
        if cur is None:
            raise CorrectionError(f"meter {meter_id!r} has no customer record to correct")
        cust, old_tx, old_phase = cur
        conn.execute("UPDATE customers SET transformer_id = %s, phase = coalesce(%s, phase),"
                     " updated_at = now() WHERE customer_id = %s", [new_tx, new_phase, cust])
        conn.execute("UPDATE meters SET transformer_id = %s, updated_at = now() WHERE meter_id = %s",
                     [new_tx, meter_id])
        conn.execute("UPDATE connectivity_suspicions SET status = 'accepted'"
                     " WHERE check_id = %s AND meter_id = %s",
                     [cid, meter_id])
        old = {"transformer_id": old_tx, "phase": old_phase}
        new = {"transformer_id": new_tx, "phase": new_phase if new_phase is not None else old_phase}
        got = conn.execute(
            "INSERT INTO archive_corrections (actor, meter_id, check_id, old, new, comment)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING correction_id",
            [actor, meter_id, cid, json.dumps(old), json.dumps(new), comment]).fetchone()
        assert got is not None
        corr_id = int(got[0])
    run_id = recompute_loss(conn) if recompute else None
    if run_id is not None:
        conn.execute("UPDATE archive_corrections SET recompute_run_id = %s WHERE correction_id = %s",
                     [run_id, corr_id])
    return Correction(corr_id, meter_id, old, new, run_id)


def recompute_loss(conn: psycopg.Connection[Any]) -> int | None:
    """Rerun the latest analysis run's period and regions on the corrected archive; None when
    there has been no analysis run yet (the next scheduled one uses the correction)."""
    from cloud.analytics.batch import analyze

    row = conn.execute("SELECT period_start, period_end, step_s, regions FROM analysis_runs"
                       " ORDER BY run_id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    start, end, step, regions = row
    return analyze(conn, start, end, step_s=int(step), regions=regions).run_id


def suspected_meters(conn: psycopg.Connection[Any]) -> set[str]:
    """Meters under an open connectivity suspicion in the latest check."""
    return {r[0] for r in conn.execute(
        "SELECT meter_id FROM connectivity_suspicions WHERE status = 'open'"
        " AND check_id = (SELECT max(check_id) FROM archive_checks)")}
