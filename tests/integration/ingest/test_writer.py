"""The writer settles chain questions against the real database, in one transaction."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from cloud.ingest.classify import Candidate, Incoming, Quarantine, QuarantineReason, classify
from cloud.ingest.limits import EARLIEST_MS, MAX_AHEAD_MS
from cloud.ingest.writer import load_keyring, register_key, store_batch
from cloud.store.migrate import migrate
from protocols.envelope import GENESIS_PREV_HASH, ClockStatus, Payload, encode_payload, envelope_hash
from protocols.reading import Reading
from security.keys import key_id, sign_envelope
from tests.unit.security.envelopes import T0, Agent, cert_for, key_from_byte

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_dsn) as c:
        migrate(c)
        yield c


@pytest.fixture
def agent(conn: psycopg.Connection[Any]) -> Agent:
    a = Agent("tx-a", key_from_byte(1))
    with conn.transaction():
        register_key(conn, cert_for(a.key, a.agent_id))
    return a


def items(conn: psycopg.Connection[Any], *payloads: bytes) -> list[Candidate | Quarantine]:
    ring = load_keyring(conn)
    return [classify(Incoming("wattrail/v1/tx-a/readings", p, i, T0), ring)
            for i, p in enumerate(payloads)]


def count(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_chain_duplicates_gaps_and_conflicts(conn: psycopg.Connection[Any], agent: Agent) -> None:
    e1, e2, e3 = agent.envelope(), agent.envelope(), agent.envelope()
    res = store_batch(conn, items(conn, e1, e2, e3))
    assert (res.stored, res.readings, res.duplicates) == (3, 3, 0)
    assert res.committed_upto == {"tx-a": 3}
    # the ack names the envelope the prefix ends at (what the agent checks before deleting)
    assert res.committed_hash == {"tx-a": hashlib.sha256(e3).digest()}

    again = store_batch(conn, items(conn, e2, e3))  # redelivery after a lost ack
    assert (again.stored, again.duplicates) == (0, 2)
    assert again.committed_upto == {"tx-a": 3}
    assert count(conn, "SELECT count(*) FROM readings") == 3

    forged2 = agent.envelope(seq=2, meter="m-9", advance=False)  # same seq, other bytes
    e5 = agent.envelope(seq=5)  # 4 is missing for now
    res = store_batch(conn, items(conn, forged2, e5))
    assert res.quarantined == {"conflict": 1}
    assert res.stored == 1
    assert res.gaps == 1
    assert res.committed_upto == {"tx-a": 3}, "never acknowledge past a missing seq"
    verdict = conn.execute("SELECT verdict FROM envelopes WHERE seq = 5").fetchone()
    assert verdict == ("gap",)

    agent.seq, agent.prev = 3, conn.execute(
        "SELECT sha256 FROM envelopes WHERE seq = 3").fetchone()[0]  # type: ignore[index]
    e4 = agent.envelope(seq=4)
    res = store_batch(conn, items(conn, e4))
    assert res.committed_upto == {"tx-a": 5}, "filling the gap acknowledges through 5"
    assert res.committed_hash == {"tx-a": hashlib.sha256(e5).digest()}

    broken = agent.envelope(seq=6, prev=b"\x11" * 32, advance=False)
    res = store_batch(conn, items(conn, broken))
    assert res.quarantined == {"conflict": 1}
    detail = conn.execute("SELECT detail FROM quarantine WHERE seq = 6").fetchone()
    assert detail is not None and "broken chain" in detail[0]
    assert count(conn, "SELECT count(*) FROM envelopes") == 5
    raw = conn.execute("SELECT raw FROM envelopes WHERE seq = 1").fetchone()
    assert raw is not None and bytes(raw[0]) == e1, "the evidence must be stored byte for byte"


def test_quarantine_counts_repeats_and_never_stores_readings(
    conn: psycopg.Connection[Any], agent: Agent,
) -> None:
    good = agent.envelope()
    bad = good[:-1] + bytes([good[-1] ^ 1])
    for _ in range(3):
        res = store_batch(conn, items(conn, bad))
        assert res.quarantined == {QuarantineReason.BAD_SIGNATURE.value: 1}
    row = conn.execute("SELECT reason, count, agent_id FROM quarantine").fetchone()
    assert row == ("bad_signature", 3, "tx-a")
    assert count(conn, "SELECT count(*) FROM readings") == 0
    assert count(conn, "SELECT count(*) FROM envelopes") == 0


def test_readings_are_idempotent_on_meter_and_time(
    conn: psycopg.Connection[Any], agent: Agent,
) -> None:
    e1 = agent.envelope(sent_at_ms=T0 + 10_000)
    # a second envelope carrying a reading of the same meter at the same instant
    e2 = agent.envelope(sent_at_ms=T0 + 10_000)
    res = store_batch(conn, items(conn, e1, e2))
    assert res.stored == 2
    assert res.readings == 1
    prov = conn.execute("SELECT provenance, agent_id, seq FROM readings").fetchall()
    assert prov == [("signed", "tx-a", 1)]


def test_a_reading_whose_instant_is_taken_is_kept_aside_not_dropped(
        conn: psycopg.Connection[Any], agent: Agent) -> None:
    # the agent's clock stepped back: envelopes 2 and 4 stamp their reading with instants that
    # envelopes 1 and 3 already used (one collision inside a batch, one across batches)
    e1 = agent.envelope(sent_at_ms=T0 + 10_000)
    e2 = agent.envelope(sent_at_ms=T0 + 10_000)
    res = store_batch(conn, items(conn, e1, e2))
    assert (res.stored, res.readings, res.reading_conflicts) == (2, 1, 1)
    e3 = agent.envelope(sent_at_ms=T0 + 20_000)
    store_batch(conn, items(conn, e3))
    e4 = agent.envelope(sent_at_ms=T0 + 20_000)
    res = store_batch(conn, items(conn, e4))
    assert (res.stored, res.readings, res.reading_conflicts) == (1, 0, 1)
    assert count(conn, "SELECT count(*) FROM readings") == 2
    kept = conn.execute("SELECT seq, import_wh FROM reading_conflicts ORDER BY seq").fetchall()
    assert kept == [(2, 1002.0), (4, 1004.0)]  # the losers' own values, with their envelopes
    # a redelivered envelope is a duplicate: its reading is not set aside a second time
    again = store_batch(conn, items(conn, e2, e4))
    assert (again.duplicates, again.reading_conflicts) == (2, 0)
    assert count(conn, "SELECT count(*) FROM reading_conflicts") == 2


def signed_readings(agent: Agent, readings: list[Reading]) -> bytes:
    """The agent's next envelope, carrying exactly `readings`."""
    seq = agent.seq + 1
    p = Payload(agent.agent_id, key_id(agent.key), seq,
                GENESIS_PREV_HASH if seq == 1 else agent.prev, T0 + seq * 1000,
                ClockStatus.SYNCED, readings)
    data = sign_envelope(agent.key, key_id(agent.key), encode_payload(p))
    agent.seq, agent.prev = seq, envelope_hash(data)
    return data


def test_two_readings_of_one_meter_at_one_instant_in_one_envelope_are_both_kept(
        conn: psycopg.Connection[Any], agent: Agent) -> None:
    t = T0 + 500
    e1 = signed_readings(agent, [
        Reading("m-1", t, import_wh=1.0), Reading("m-2", t, import_wh=7.0),
        Reading("m-1", t, import_wh=2.0, v_l1=230.0),  # same meter and instant, other values
        Reading("m-1", t, import_wh=1.0)])  # and an exact repeat of the first
    res = store_batch(conn, items(conn, e1))
    assert (res.stored, res.readings, res.reading_conflicts) == (1, 2, 2)
    stored = conn.execute("SELECT meter_id, import_wh, seq FROM readings ORDER BY 1").fetchall()
    # the first in the envelope (the stage is scanned in COPY order; not evidence either way)
    assert stored == [("m-1", 1.0, 1), ("m-2", 7.0, 1)]
    kept = conn.execute("SELECT meter_id, ts, import_wh, v_l1, agent_id, seq "
                        "FROM reading_conflicts ORDER BY id").fetchall()
    ts = conn.execute("SELECT ts FROM readings WHERE meter_id = 'm-1'").fetchone()[0]  # type: ignore[index]
    assert kept == [("m-1", ts, 2.0, 230.0, "tx-a", 1), ("m-1", ts, 1.0, None, "tx-a", 1)]
    # and beside a conflict across envelopes of one batch (the clock stepped back)
    e2 = signed_readings(agent, [Reading("m-1", t, import_wh=3.0)])
    e3 = signed_readings(agent, [Reading("m-3", t, import_wh=4.0), Reading("m-3", t, import_wh=5.0)])
    res = store_batch(conn, items(conn, e2, e3))
    assert (res.stored, res.readings, res.reading_conflicts) == (2, 1, 2)
    assert conn.execute("SELECT seq, meter_id, import_wh FROM reading_conflicts WHERE seq > 1 "
                        "ORDER BY id").fetchall() == [(2, "m-1", 3.0), (3, "m-3", 5.0)]
    # every signed reading of every envelope is in exactly one of the two tables
    held = conn.execute("SELECT seq, count(*) FROM (SELECT seq FROM readings UNION ALL "
                        "SELECT seq FROM reading_conflicts) x GROUP BY 1 ORDER BY 1").fetchall()
    assert held == [(1, 4), (2, 1), (3, 2)]
    again = store_batch(conn, items(conn, e1, e2, e3))  # redelivered: nothing set aside twice
    assert (again.duplicates, again.reading_conflicts) == (3, 0)
    assert count(conn, "SELECT count(*) FROM reading_conflicts") == 4


def test_the_extreme_values_classify_accepts_store_as_signed(
        conn: psycopg.Connection[Any], agent: Agent) -> None:
    """The limits of cloud/ingest/limits.py against the real schema: what classify lets
    through is stored with its meaning, and the quarantine holds any claim."""
    readings = [
        Reading("é" * 200, EARLIEST_MS, status=2**31 - 1, import_wh=1.7976931348623157e308,
                export_wh=-1.7976931348623157e308, pf=-0.0, i_n=5e-324),
        Reading("🔌" * 200, T0 + MAX_AHEAD_MS, status=0, v_l1=230.0),  # 4-byte UTF-8
    ]
    res = store_batch(conn, items(conn, signed_readings(agent, readings)))
    assert (res.stored, res.readings, res.quarantined) == (1, 2, {})
    got = conn.execute("SELECT meter_id, (extract(epoch FROM ts) * 1000)::bigint, status, "
                       "import_wh, export_wh, pf, i_n, v_l1 FROM readings ORDER BY ts").fetchall()
    assert got[0][:5] == ("é" * 200, EARLIEST_MS, 2**31 - 1, 1.7976931348623157e308,
                          -1.7976931348623157e308)
    assert math.copysign(1.0, got[0][5]) == -1.0 and got[0][6] == 5e-324
    assert got[1][:3] == ("🔌" * 200, T0 + MAX_AHEAD_MS, 0)
    junk = Quarantine(Incoming("wattrail/v1/tx-a/readings", b"\x00junk", 9, T0),
                      QuarantineReason.MALFORMED, "claims \x00 anything", b"\x07" * 32,
                      agent_id="tx\x00" + "a" * 5000, seq=2**64 - 1)
    assert store_batch(conn, [junk]).quarantined == {"malformed": 1}
    row = conn.execute("SELECT agent_id, seq, detail FROM quarantine").fetchone()
    assert row is not None and row[0].startswith("tx\\x00a") and row[1] is None
    assert row[2] == "claims \\x00 anything"


def test_quarantine_keeps_whole_messages_up_to_the_agents_budget_then_prefixes(
        conn: psycopg.Connection[Any]) -> None:
    from cloud.ingest.writer import QUARANTINE_PREFIX_BYTES

    def junk(agent: str, i: int, size: int) -> Quarantine:
        payload = bytes([i % 256]) * size
        return Quarantine(Incoming(f"wattrail/v1/{agent}/readings", payload, i, T0),
                          QuarantineReason.MALFORMED, "junk", hashlib.sha256(payload).digest(),
                          agent_id="claims-to-be-someone-else")
    budget = 20_000
    a = [junk("tx-a", i, 6000) for i in range(5)]  # 3 fit whole (18,000), 2 do not
    res = store_batch(conn, [*a, junk("tx-b", 9, 6000)], quarantine_budget=budget)
    assert res.truncated == {"tx-a": 2}, "counted against the topic's agent, not the claim"
    assert store_batch(conn, [a[0], a[4]], quarantine_budget=budget).truncated == {}, \
        "a repeat costs a counter, not its bytes again"
    rows = conn.execute("SELECT length(raw), size_bytes, truncated, count FROM quarantine "
                        "ORDER BY id").fetchall()
    assert rows == [(6000, 6000, False, 2), (6000, 6000, False, 1), (6000, 6000, False, 1),
                    (QUARANTINE_PREFIX_BYTES, 6000, True, 1),
                    (QUARANTINE_PREFIX_BYTES, 6000, True, 2), (6000, 6000, False, 1)]
    # the hash is of the whole message, so a copy found later can still be matched
    kept = conn.execute("SELECT sha256 FROM quarantine WHERE truncated ORDER BY id").fetchall()
    assert [bytes(r[0]) for r in kept] == [a[3].envelope_hash, a[4].envelope_hash]
    usage = conn.execute("SELECT agent_key, bytes, truncated FROM quarantine_usage ORDER BY 1"
                         ).fetchall()
    assert usage == [("tx-a", 18_000, 2), ("tx-b", 6000, 0)]
    # an oversized message is a prefix whatever the budget
    big = b"\x01" * (QUARANTINE_PREFIX_BYTES * 3)
    over = Quarantine(Incoming("wattrail/v1/tx-c/readings", big, 1, T0),
                      QuarantineReason.OVERSIZED, "too big", hashlib.sha256(big).digest())
    assert store_batch(conn, [over], quarantine_budget=10**12).truncated == {"tx-c": 1}
    conn.commit()
