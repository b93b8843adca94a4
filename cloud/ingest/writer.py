"""Store one batch in one transaction, settling the chain questions against the database.

The database, not any ingestor's memory, is the authority on each agent's chain, so any
ingestor can take any message (shared subscription) and a restarted ingestor needs no state:

- (agent, seq) already stored with the same SHA-256  -> duplicate: acknowledged, not stored;
- (agent, seq) already stored with other bytes       -> quarantine `conflict`;
- seq-1 stored and this envelope's prev-hash differs -> quarantine `conflict` (broken chain);
- seq-1 not stored (yet)                             -> stored, verdict `gap` (may fill later);
- otherwise                                          -> stored, verdict `ok`.

Envelopes are inserted with ON CONFLICT DO NOTHING, so a race with another ingestor storing
the same seq ends as a duplicate or a conflict, never as two rows. Readings are COPYed into a
temporary table and inserted with ON CONFLICT (meter_id, ts) DO NOTHING; every signed reading
that did not get its row (its instant was taken by an earlier envelope, an import, or another
reading of the same meter in the same envelope) is kept in `reading_conflicts`, so each
envelope's readings are exactly its rows in `readings` plus its rows there.

Every value reaching this module fits its column: `classify` quarantines envelopes that hold
anything else (cloud/ingest/limits.py). `stage_rows` and `quarantine_row` are the pure parts
(the property test in tests/unit/ingest/test_storable.py drives them with random payloads).

"Committed up to N" for an agent is the longest gap-free prefix 1..N of its stored seqs, kept
in `agent_progress` under a row lock: acknowledging past a missing seq would make the agent
delete an envelope the cloud never stored.
"""

from __future__ import annotations

import logging
import operator
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from cloud.alarms import store as alarms_store
from cloud.alarms.engine import Observed
from cloud.ingest.classify import Candidate, Quarantine, QuarantineReason
from cloud.store import envelopes_sql, quarantine_sql, readings_sql
from protocols.envelope import GENESIS_PREV_HASH
from protocols.errors import ProtocolError
from protocols.reading import MEASURED_FIELDS
from protocols.topics import parse_topic
from security.keyring import KeyCertificate, Keyring

_FAR_FUTURE_MS = 253_402_300_799_000  # 9999-12-31


@dataclass
class BatchResult:
    stored: int = 0
    readings: int = 0
    duplicates: int = 0
    gaps: int = 0  # envelopes stored ahead of a missing seq (verdict "gap")
    reading_conflicts: int = 0  # signed readings whose (meter, ts) was taken: kept aside
    quarantined: Counter[str] = field(default_factory=Counter)
    committed_upto: dict[str, int] = field(default_factory=dict)
    # SHA-256 of each agent's envelope at committed_upto (zeros for 0): the ack names it, so
    # an agent can tell an ack about its own chain from one left over from an earlier chain
    committed_hash: dict[str, bytes] = field(default_factory=dict)
    # per budget key (the topic's agent): quarantined messages kept only as a prefix because
    # that agent's quarantine budget is spent (or they are oversized)
    truncated: Counter[str] = field(default_factory=Counter)
    # meter ids of the readings stored by this batch: the ingestor checks them against the
    # archive (a reading of a meter the archive does not know is stored, and said so)
    meter_ids: set[str] = field(default_factory=set)
    alarm_events: int = 0  # raise/repeat/clear events the alarm rules made (-1: they failed)

    def merge(self, other: BatchResult) -> None:
        self.stored += other.stored
        self.readings += other.readings
        self.duplicates += other.duplicates
        self.gaps += other.gaps
        self.reading_conflicts += other.reading_conflicts
        self.quarantined.update(other.quarantined)
        self.committed_upto.update(other.committed_upto)
        self.committed_hash.update(other.committed_hash)
        self.truncated.update(other.truncated)
        self.meter_ids |= other.meter_ids
        self.alarm_events += other.alarm_events


def load_keyring(conn: psycopg.Connection[Any]) -> Keyring:
    rows = conn.execute(
        "SELECT agent_id, key_id, public_key, "
        "       (extract(epoch FROM valid_from) * 1000)::bigint, "
        "       (extract(epoch FROM valid_to) * 1000)::bigint, from_seq, "
        "       (extract(epoch FROM revoked_at) * 1000)::bigint "
        "FROM agent_keys ORDER BY agent_id, from_seq").fetchall()
    return Keyring(
        KeyCertificate(a, bytes(k), bytes(p), vf, vt if vt is not None else _FAR_FUTURE_MS,
                       max(1, fs), rv)
        for a, k, p, vf, vt, fs, rv in rows)


def registry_generation(conn: psycopg.Connection[Any]) -> int:
    """The registry's change counter (migration 0052): equal numbers, the same keyring."""
    row = conn.execute("SELECT generation FROM registry_generation").fetchone()
    if row is None:  # the row is inserted by the migration and never deleted
        raise RuntimeError("registry_generation is empty; run `wattrail db migrate`")
    return int(row[0])


def register_key(conn: psycopg.Connection[Any], cert: KeyCertificate,
                 certificate_pem: str | None = None) -> None:
    """Add an agent and its signing key to the registry (idempotent; keeps a revocation)."""
    conn.execute("INSERT INTO agents (agent_id) VALUES (%s) ON CONFLICT DO NOTHING",
                 [cert.agent_id])
    conn.execute(
        "INSERT INTO agent_keys (agent_id, key_id, public_key, certificate_pem, valid_from, "
        "valid_to, from_seq, revoked_at) VALUES (%s, %s, %s, %s, to_timestamp(%s / 1000.0), "
        "to_timestamp(%s / 1000.0), %s, to_timestamp(%s / 1000.0)) "
        "ON CONFLICT (agent_id, key_id) DO UPDATE SET revoked_at = "
        "coalesce(agent_keys.revoked_at, excluded.revoked_at)",
        [cert.agent_id, cert.kid, cert.public_key, certificate_pem, cert.valid_from_ms,
         cert.valid_to_ms, cert.from_seq, cert.revoked_at_ms])


_STAGE = ("CREATE TEMP TABLE IF NOT EXISTS ingest_stage ("
          "meter_id text COLLATE \"C\", ts_ms bigint, "
          + ", ".join(f"{f} float8" for f in MEASURED_FIELDS)
          + ", status int4, quality int2, agent_id text COLLATE \"C\", seq int8) "
          "ON COMMIT DELETE ROWS")
_STAGE_TYPES = ["text", "int8", *["float8"] * len(MEASURED_FIELDS), "int4", "int2", "text", "int8"]
_COPY = "COPY ingest_stage FROM STDIN WITH (FORMAT BINARY)"
log = logging.getLogger(__name__)


_ROW = operator.attrgetter("meter_id", "ts_ms", *MEASURED_FIELDS, "status", "quality")
StageRow = tuple[Any, ...]  # meter_id, ts_ms, MEASURED_FIELDS..., status, quality, agent_id, seq


def stage_rows(c: Candidate) -> list[StageRow]:
    """The rows one envelope's readings COPY into `ingest_stage`, in _STAGE_TYPES order.
    Pure; every value fits its column because `classify` refused the envelopes that do not
    (cloud/ingest/limits.py): the property test in tests/unit/ingest checks the two together."""
    tail = (c.agent_id, c.seq)
    # one C-level attribute fetch per reading; values are already checked finite by the
    # payload decoder, so they go to COPY as they are
    return [_ROW(r) + tail for r in c.payload.readings]


_QUARANTINE_DETAIL_MAX = 2000
_CLAIMED_ID_MAX = 256  # the raw bytes keep a longer claim


QUARANTINE_BUDGET_BYTES = 64 * 1024 * 1024  # per agent, kept whole; `wattrail ingest --quarantine-budget`
QUARANTINE_PREFIX_BYTES = 4096  # what is kept of a message past the budget, or oversized


def quarantine_row(q: Quarantine, *, whole: bool = True
                   ) -> tuple[bytes, bytes, str | None, int | None, str, str]:
    """(sha256, raw, agent_id, seq, reason, detail) as the `quarantine` table can hold them.
    `whole=False`: only the first QUARANTINE_PREFIX_BYTES of the message are kept (the hash is
    still of all of it).

    The claims in a quarantined message are untrusted and may be anything its CBOR can carry:
    text holding U+0000 (PostgreSQL text cannot), a seq beyond bigint. A row the table refuses
    would fail the batch, so the claims are made storable here; the raw bytes keep the truth."""
    seq = q.seq if q.seq is not None and 0 <= q.seq <= 2**63 - 1 else None
    agent = None if q.agent_id is None else _text(q.agent_id)[:_CLAIMED_ID_MAX]
    raw = q.msg.payload if whole else q.msg.payload[:QUARANTINE_PREFIX_BYTES]
    return (q.envelope_hash, raw, agent, seq, q.reason.value,
            _text(q.detail)[:_QUARANTINE_DETAIL_MAX] or q.reason.value)


def budget_key(q: Quarantine) -> str:
    """Whose quarantine budget a message counts against: the agent of its MQTT topic (the
    broker's ACL ties it to the sender's certificate; the claims inside are anyone's), or ''
    for a message on no agent's topic."""
    try:
        return _text(parse_topic(q.msg.topic)[0])[:_CLAIMED_ID_MAX]
    except ProtocolError:
        return ""


def _text(s: str) -> str:
    return s.replace("\x00", "\\x00")  # shown as the escape, so a reader sees it was there


def store_batch(conn: psycopg.Connection[Any], items: Sequence[Candidate | Quarantine], *,
                quarantine_budget: int = QUARANTINE_BUDGET_BYTES) -> BatchResult:
    res = BatchResult()
    cands = sorted((i for i in items if isinstance(i, Candidate)),
                   key=lambda c: (c.agent_id, c.seq))
    quarantine = [i for i in items if isinstance(i, Quarantine)]
    agents = sorted({c.agent_id for c in cands})
    with conn.transaction():
        known = _known_hashes(conn, cands)
        to_insert: list[tuple[Candidate, str]] = []
        for c in cands:
            key = (c.agent_id, c.seq)
            if key in known:
                if known[key] == c.envelope_hash:
                    res.duplicates += 1
                else:
                    quarantine.append(_conflict(c, f"seq {c.seq} already stored with other bytes"))
                continue
            prev = known.get((c.agent_id, c.seq - 1))
            if c.seq == 1 and c.payload.prev_hash != GENESIS_PREV_HASH:
                quarantine.append(_conflict(c, "seq 1 must carry the all-zero prev hash"))
                continue
            if prev is not None and prev != c.payload.prev_hash:
                quarantine.append(_conflict(
                    c, f"broken chain: prev hash does not match stored seq {c.seq - 1}"))
                continue
            verdict = "ok" if c.seq == 1 or prev is not None else "gap"
            to_insert.append((c, verdict))
            known[key] = c.envelope_hash
        inserted = _insert_envelopes(conn, to_insert)
        for c, _v in to_insert:  # lost a race with another ingestor for this seq
            if (c.agent_id, c.seq) not in inserted:
                row = conn.execute(envelopes_sql.SHA256_AT, [c.agent_id, c.seq]).fetchone()
                if row is not None and bytes(row[0]) == c.envelope_hash:
                    res.duplicates += 1
                else:
                    quarantine.append(_conflict(c, f"seq {c.seq} stored concurrently with "
                                                   "other bytes"))
        stored = [c for c, _v in to_insert if (c.agent_id, c.seq) in inserted]
        res.stored = len(stored)
        res.gaps = sum(1 for c, v in to_insert if v == "gap" and (c.agent_id, c.seq) in inserted)
        res.readings, res.reading_conflicts = _insert_readings(conn, stored)
        res.alarm_events = _judge_alarms(conn, stored)
        res.meter_ids = {r.meter_id for c in stored for r in c.payload.readings}
        for q in quarantine:
            if not _quarantine(conn, q, quarantine_budget):
                res.truncated[budget_key(q)] += 1
            res.quarantined[q.reason.value] += 1
        res.committed_upto, res.committed_hash = _advance(conn, agents)
    return res


def _judge_alarms(conn: psycopg.Connection[Any], stored: list[Candidate]) -> int:
    """The streaming alarm rules on exactly the readings this transaction stores (docs/alarms.md),
    in a savepoint: a failing rule must never cost a signed reading, so it is logged and the
    batch goes on (the database going away still fails the batch, to be retried whole)."""
    if not stored:
        return 0
    observed = [Observed(c.agent_id, c.seq, r) for c in stored for r in c.payload.readings]
    try:
        with conn.transaction():
            return alarms_store.judge(conn, observed)
    except psycopg.OperationalError:
        raise
    except Exception:
        log.exception("the alarm rules failed on a batch of %d readings; stored without alarms",
                      len(observed))
        return -1


def _conflict(c: Candidate, detail: str) -> Quarantine:
    return Quarantine(c.msg, QuarantineReason.CONFLICT, detail, c.envelope_hash,
                      agent_id=c.agent_id, seq=c.seq)


def _known_hashes(conn: psycopg.Connection[Any], cands: list[Candidate]
                  ) -> dict[tuple[str, int], bytes]:
    if not cands:
        return {}
    agents = [c.agent_id for c in cands] * 2
    seqs = [c.seq for c in cands] + [c.seq - 1 for c in cands]
    rows = conn.execute(envelopes_sql.HASHES_AT_KEYS, [agents, seqs]).fetchall()
    return {(a, s): bytes(h) for a, s, h in rows}


def _insert_envelopes(conn: psycopg.Connection[Any], rows: list[tuple[Candidate, str]]
                      ) -> set[tuple[str, int]]:
    if not rows:
        return set()
    out = conn.execute(
        envelopes_sql.INSERT_FROM_ARRAYS,
        [[c.agent_id for c, _ in rows], [c.seq for c, _ in rows],
         [c.msg.payload for c, _ in rows], [c.envelope_hash for c, _ in rows],
         [c.payload.kid for c, _ in rows], [c.payload.sent_at_ms for c, _ in rows],
         [c.msg.received_ms for c, _ in rows], [v for _, v in rows],
         [int(c.payload.clock) for c, _ in rows]]).fetchall()
    return {(a, s) for a, s in out}


def _insert_readings(conn: psycopg.Connection[Any], stored: list[Candidate]) -> tuple[int, int]:
    """COPY the envelopes' readings in; (rows stored, rows kept in `reading_conflicts` because
    their (meter, ts) was already taken)."""
    if not stored:
        return 0, 0
    staged = sum(len(c.payload.readings) for c in stored)
    conn.execute(_STAGE)
    with conn.cursor() as cur:
        with cur.copy(_COPY) as copy:
            copy.set_types(_STAGE_TYPES)
            for c in stored:
                for row in stage_rows(c):
                    copy.write_row(row)
        cur.execute(readings_sql.INSERT_SIGNED_FROM_STAGE)
        inserted = cur.rowcount
        if inserted == staged:
            return inserted, 0
        # Some instants were taken (a clock that stepped back, an earlier import, or another
        # reading of the same meter and instant in the same envelope): nothing signed is
        # dropped, every staged row that did not become a readings row goes aside with its
        # envelope. The one that did is a staged row of its envelope with the stored row's
        # key and values (one per group: `min(ctid)`, a row id that costs nothing on the hot
        # path; which of several equal rows it names does not matter). Rare path.
        cur.execute(readings_sql.CONFLICTS_FROM_STAGE,
                    [[c.agent_id for c in stored], [c.seq for c in stored]])
        conflicts = cur.rowcount
        log.warning("%d signed readings found their (meter, ts) taken; kept in reading_conflicts",
                    conflicts)
        return inserted, conflicts


def _quarantine(conn: psycopg.Connection[Any], q: Quarantine, budget: int) -> bool:
    """Store (or count again) one quarantined message; False when only its prefix was kept
    because its agent's budget is spent (or it is oversized)."""
    sha = q.envelope_hash
    if conn.execute(quarantine_sql.COUNT_AGAIN, [sha]).rowcount:
        return True  # seen before: a repeat costs a counter, not its bytes again
    size = len(q.msg.payload)
    key = budget_key(q)
    whole = q.reason is not QuarantineReason.OVERSIZED and size <= budget and conn.execute(
        "INSERT INTO quarantine_usage AS u (agent_key, bytes) VALUES (%s, %s) "
        "ON CONFLICT (agent_key) DO UPDATE SET bytes = u.bytes + excluded.bytes, "
        "updated_at = now() WHERE u.bytes + excluded.bytes <= %s RETURNING 1",
        [key, size, budget]).fetchone() is not None
    truncated = not whole and size > QUARANTINE_PREFIX_BYTES
    if truncated:
        conn.execute("INSERT INTO quarantine_usage AS u (agent_key, truncated) VALUES (%s, 1) "
                     "ON CONFLICT (agent_key) DO UPDATE SET truncated = u.truncated + 1, "
                     "updated_at = now()", [key])
    conn.execute(quarantine_sql.INSERT, [*quarantine_row(q, whole=whole), size, truncated])
    return not truncated


def _advance(conn: psycopg.Connection[Any], agents: list[str]
             ) -> tuple[dict[str, int], dict[str, bytes]]:
    """Move each agent's gap-free committed prefix forward; return it, and the hash of the
    envelope it ends at, for the acks."""
    out: dict[str, int] = {}
    hashes: dict[str, bytes] = {}
    for agent in agents:  # sorted: two ingestors lock agents in the same order
        conn.execute("INSERT INTO agent_progress (agent_id) VALUES (%s) ON CONFLICT DO NOTHING",
                     [agent])
        row = conn.execute("SELECT committed_upto FROM agent_progress WHERE agent_id = %s "
                           "FOR UPDATE", [agent]).fetchone()
        assert row is not None
        upto = int(row[0])
        while True:  # in pages, in case a long backlog was stored ahead of a filled gap
            seqs = [s for (s,) in conn.execute(envelopes_sql.SEQS_AFTER, [agent, upto])]
            run = upto
            for s in seqs:
                if s != run + 1:
                    break
                run = s
            if run == upto:
                break
            upto = run
            if run != seqs[-1] or len(seqs) < envelopes_sql.SEQS_PAGE:  # stopped at a gap, or saw them all
                break
        conn.execute("UPDATE agent_progress SET committed_upto = %s, updated_at = now() "
                     "WHERE agent_id = %s", [upto, agent])
        out[agent] = upto
        hashes[agent] = GENESIS_PREV_HASH  # seq 0: nothing committed yet
        if upto:
            h = conn.execute(envelopes_sql.SHA256_AT, [agent, upto]).fetchone()
            assert h is not None, "the committed prefix ends at a stored envelope"
            hashes[agent] = bytes(h[0])
    return out, hashes
