"""`store.run_check` and `store.accept` on a corrupted archive in a real TimescaleDB: the check
finds what was corrupted and changes nothing; an accepted correction changes the archive, is
logged append-only, and reruns the loss report, which then no longer shows the phantom loss."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from cloud.analytics.batch import analyze
from cloud.archive import store

from .conftest import END, START, STEP, Corrupted

pytestmark = pytest.mark.integration


def _tx_of(conn: psycopg.Connection[Any], meter_id: str) -> tuple[str, int | None]:
    row = conn.execute("SELECT c.transformer_id, c.phase FROM meters m JOIN customers c USING (customer_id)"
                       " WHERE m.meter_id = %s", [meter_id]).fetchone()
    assert row is not None
    return row[0], row[1]


def _ntl(conn: psycopg.Connection[Any], run_id: int) -> dict[str, float]:
    return {r[0]: float(r[1]) for r in conn.execute(
        "SELECT entity_id, ntl_wh FROM analysis_loss WHERE run_id = %s AND level = 'transformer'",
        [run_id])}


def test_check_then_accept(corrupted: Corrupted) -> None:
    c = corrupted
    with psycopg.connect(c.dsn, autocommit=True) as conn:
        before = analyze(conn, START, END, step_s=STEP).run_id
        res = store.run_check(conn, START, END, step_s=STEP)

        # every corruption found, with the true value suggested, and nothing else suspected
        got = {s["meter_id"]: s for s in res.suspicions}
        assert set(got) == set(c.moved) | set(c.rephased)
        for mid in c.moved:
            assert got[mid]["kind"] == "transformer"
            assert got[mid]["recorded_transformer_id"] == c.moved[mid]
            assert got[mid]["suggested_transformer_id"] == c.true_tx[mid]
            assert got[mid]["confidence"] >= 0.9
        for mid, wrong in c.rephased.items():
            assert got[mid]["kind"] == "phase"
            assert (got[mid]["recorded_phase"], got[mid]["suggested_phase"]) == (wrong, c.true_phase[mid])
        assert [s["rank"] for s in res.suspicions] == list(range(1, len(got) + 1))
        missing = [f for f in res.findings if f.kind == "not_in_archive"]
        assert [f.object_id for f in missing] == [c.unrecorded]
        assert missing[0].evidence["readings"] > 0 and missing[0].fix
        # placed by its voltage: the transformer (and phase) it really hangs on
        placed = missing[0].evidence["voltage_suggests"]
        assert placed["transformer_id"] == c.true_tx[c.unrecorded], placed
        assert placed["phase"] == c.true_phase.get(c.unrecorded), placed
        assert c.true_tx[c.unrecorded] in missing[0].fix

        # stored as one check, and the archive is untouched by it
        stored = conn.execute(
            "SELECT (SELECT count(*) FROM connectivity_suspicions WHERE check_id = %(c)s"
            "        AND status = 'open'),"
            " (SELECT count(*) FROM archive_findings WHERE check_id = %(c)s)", {"c": res.check_id}).fetchone()
        assert stored == (len(got), len(res.findings))
        counts = conn.execute("SELECT sum(n) FROM archive_finding_counts WHERE check_id = %s",
                              [res.check_id]).fetchone()
        assert counts is not None and counts[0] == len(res.findings)
        for mid, wrong_tx in c.moved.items():
            assert _tx_of(conn, mid)[0] == wrong_tx

        # accept every suggestion; each is logged and reruns the loss report
        runs = []
        for mid in [s["meter_id"] for s in res.suspicions]:
            corr = store.accept(conn, mid, actor="eng-1", comment="field visit 42")
            assert corr.recompute_run_id is not None and corr.recompute_run_id > before
            runs.append(corr.recompute_run_id)
            want_tx = c.true_tx[mid]
            assert _tx_of(conn, mid) == (want_tx, c.true_phase.get(mid))
        assert runs == sorted(set(runs))
        with pytest.raises(store.CorrectionError, match="no open connectivity suspicion"):
            store.accept(conn, next(iter(c.moved)), actor="eng-1")
        log = conn.execute("SELECT actor, meter_id, old->>'transformer_id', new->>'transformer_id', comment,"
                           " recompute_run_id FROM archive_corrections ORDER BY correction_id").fetchall()
        assert [r[1] for r in log] == [s["meter_id"] for s in res.suspicions]
        assert all(r[0] == "eng-1" and r[4] == "field visit 42" for r in log)
        assert [r[5] for r in log] == runs

        # the log is append-only
        for stmt in ("UPDATE archive_corrections SET actor = 'someone else'",
                     "UPDATE archive_corrections SET new = '{}'::jsonb",
                     "DELETE FROM archive_corrections"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(stmt)

        # the phantom loss of the mislabelled transformers is gone after the corrections
        ntl_before, ntl_after = _ntl(conn, before), _ntl(conn, runs[-1])
        for tx in set(c.moved.values()) | {c.true_tx[m] for m in c.moved}:
            assert abs(ntl_after[tx]) < 0.5 * abs(ntl_before[tx]), (tx, ntl_before[tx], ntl_after[tx])

        # a new check on the corrected archive suspects nothing and supersedes nothing accepted
        again = store.run_check(conn, START, END, step_s=STEP)
        assert again.suspicions == []
        statuses = dict(conn.execute("SELECT status, count(*) FROM connectivity_suspicions"
                                     " WHERE check_id = %s GROUP BY 1", [res.check_id]).fetchall())
        assert statuses == {"accepted": len(got)}
        assert store.suspected_meters(conn) == set()


def test_an_older_checks_open_suspicions_are_superseded(corrupted: Corrupted) -> None:
    """Runs after the corrections above were applied: corrupt one meter again, check twice."""
    c = corrupted
    mid, wrong = next(iter(c.moved.items()))
    with psycopg.connect(c.dsn, autocommit=True) as conn:
        conn.execute("UPDATE customers SET transformer_id = %s WHERE customer_id ="
                     " (SELECT customer_id FROM meters WHERE meter_id = %s)", [wrong, mid])
        first = store.run_check(conn, START, END, step_s=STEP)
        assert [s["meter_id"] for s in first.suspicions] == [mid]
        assert store.suspected_meters(conn) == {mid}
        second = store.run_check(conn, START, END, step_s=STEP)
        st = conn.execute("SELECT status FROM connectivity_suspicions WHERE check_id = %s",
                          [first.check_id]).fetchall()
        assert st == [("superseded",)]
        with pytest.raises(store.CorrectionError):
            store.accept(conn, mid, actor="eng-2", check_id=first.check_id)
        corr = store.accept(conn, mid, actor="eng-2", check_id=second.check_id, recompute=False)
        assert corr.recompute_run_id is None and corr.old["transformer_id"] == wrong
