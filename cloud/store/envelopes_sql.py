"""Every query on the `envelopes` table (cloud/store/migrations/0003_evidence.sql), in one place.

The ingestor, the transparency log's sequencer, the API and the demo and campaign checks run
these; none writes SQL on `envelopes` of its own, so a change to the table is a change to this
file. Pure text: the callers own their connections (sync or async). Parameters are psycopg
placeholders. (Readings counted by their envelope's flags: `readings_sql`.)
"""

from __future__ import annotations

# --- ingest (cloud/ingest/writer.py)
# the stored hash of one envelope (params: agent, seq): a lost insert race, an ack's hash
SHA256_AT = "SELECT sha256 FROM envelopes WHERE agent_id = %s AND seq = %s"
# the stored hashes at the (agent, seq) keys a batch names (params: agent ids, seqs)
HASHES_AT_KEYS = (
    "SELECT e.agent_id, e.seq, e.sha256 FROM envelopes e "
    "JOIN unnest(%s::text[], %s::int8[]) AS k(agent_id, seq) "
    "ON e.agent_id = k.agent_id AND e.seq = k.seq")
# a batch's envelopes as column arrays (agent, seq, raw, sha256, key id, sent-at ms, received
# ms, verdict, clock status); returns the (agent_id, seq) of the rows that went in
INSERT_FROM_ARRAYS = (
    "INSERT INTO envelopes (agent_id, seq, raw, sha256, key_id, sent_at, received_at, verdict, "
    "                       clock_status) "
    "SELECT a, s, r, h, k, to_timestamp(st / 1000.0), to_timestamp(rt / 1000.0), v, cs "
    "FROM unnest(%s::text[], %s::int8[], %s::bytea[], %s::bytea[], %s::bytea[], "
    "            %s::int8[], %s::int8[], %s::text[], %s::int2[]) "
    "     AS u(a, s, r, h, k, st, rt, v, cs) "
    "ON CONFLICT (agent_id, seq) DO NOTHING RETURNING agent_id, seq")
# one page of an agent's stored seqs above its committed prefix (params: agent, upto)
SEQS_PAGE = 10000
SEQS_AFTER = (
    "SELECT seq FROM envelopes WHERE agent_id = %s AND seq > %s ORDER BY seq "
    f"LIMIT {SEQS_PAGE}")

# --- transparency log (cloud/ingest/tlog.py)
# stored envelopes not logged yet, in the log's order (param: limit)
UNLOGGED = (
    "SELECT agent_id, seq, raw FROM envelopes WHERE log_index IS NULL "
    "ORDER BY received_at, agent_id, seq LIMIT %s")
# every unlogged envelope with a leaf takes the leaf's index
SET_LOG_INDEX_FROM_LEAVES = (
    "UPDATE envelopes e SET log_index = l.idx FROM tlog_leaves l "
    "WHERE l.agent_id = e.agent_id AND l.seq = e.seq AND e.log_index IS NULL")

# --- API (cloud/api/evidence.py, cloud/api/routes/)
# the nearest stored predecessor of a seq (params: agent, seq)
PREDECESSOR = ("SELECT seq, sha256 FROM envelopes WHERE agent_id = %s AND seq < %s "
               "ORDER BY seq DESC LIMIT 1")
# one envelope as the audit shows it (params: agent, seq)
AUDIT_AT = ("SELECT agent_id, seq, raw, sha256, key_id, sent_at, received_at, verdict, log_index "
            "FROM envelopes WHERE agent_id = %s AND seq = %s")
IS_STORED = "SELECT 1 AS x FROM envelopes WHERE agent_id = %s AND seq = %s"
# the log leaf of one envelope (params: agent, seq); none when it is not stored or not logged
LEAF_AT = ("SELECT l.idx, l.leaf_hash FROM envelopes e JOIN tlog_leaves l "
           "ON l.idx = e.log_index WHERE e.agent_id = %s AND e.seq = %s")
# an agent's chain (param: agent each): totals, gaps (a run of seqs missing between two stored
# ones, or before the first; params agent, limit), verdicts, untrusted clocks
CHAIN_TOTALS = ("SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi, max(received_at) AS last, "
                "count(*) FILTER (WHERE log_index IS NULL) AS unlogged "
                "FROM envelopes WHERE agent_id = %s")
CHAIN_GAPS = ("SELECT from_seq, to_seq FROM ("
              "  SELECT coalesce(lag(seq) OVER (ORDER BY seq), 0) + 1 AS from_seq, seq - 1 AS to_seq"
              "  FROM envelopes WHERE agent_id = %s) g "
              "WHERE to_seq >= from_seq ORDER BY from_seq LIMIT %s")
COUNT_BY_VERDICT = ("SELECT verdict, count(*) AS n FROM envelopes WHERE agent_id = %s "
                    "GROUP BY verdict")
COUNT_BY_CLOCK_FLAG = ("SELECT clock_status, count(*) AS n FROM envelopes "
                       "WHERE agent_id = %s AND clock_status <> 0 GROUP BY clock_status")
# the audit export (cloud/api/routes/export.py): first and last seq sent in [start, end)
# (params: agent, start, end), the envelopes in [lo, hi] (params: agent, lo, hi, limit), the
# one at a seq, and the stored seqs just outside the export, by seq or by sent-at
SEQ_SPAN_SENT_IN = ("SELECT min(seq) AS lo, max(seq) AS hi FROM envelopes "
                    "WHERE agent_id = %s AND sent_at >= %s AND sent_at < %s")
_EXPORT_COLS = "seq, raw, sha256, key_id, sent_at, received_at, verdict, log_index"
EXPORT_IN_SEQS = (f"SELECT {_EXPORT_COLS} FROM envelopes WHERE agent_id = %s AND seq BETWEEN %s AND %s "
                  "ORDER BY seq LIMIT %s")
SEQ_SHA256_AT = "SELECT seq, sha256 FROM envelopes WHERE agent_id = %s AND seq = %s"
MAX_SEQ_BELOW = "SELECT max(seq) AS s FROM envelopes WHERE agent_id = %s AND seq < %s"
MIN_SEQ_ABOVE = "SELECT min(seq) AS s FROM envelopes WHERE agent_id = %s AND seq > %s"
MAX_SEQ_SENT_BEFORE = ("SELECT max(seq) AS s FROM envelopes WHERE agent_id = %s "
                       "AND sent_at < %s")
MIN_SEQ_SENT_FROM = ("SELECT min(seq) AS s FROM envelopes WHERE agent_id = %s "
                     "AND sent_at >= %s")

# --- demo and campaign checks (wattrail/)
COUNT = "SELECT count(*) FROM envelopes"
ALL_SHA256 = "SELECT sha256 FROM envelopes"
# stored envelopes and the seqs missing below each agent's highest stored one, summed
COUNT_AND_MISSING = ("SELECT coalesce(sum(n), 0), coalesce(sum(top - n), 0) FROM "
                     "(SELECT count(*) n, max(seq) top FROM envelopes GROUP BY agent_id)"
                     " per_agent")
MISSING = ("SELECT coalesce(sum(g), 0) FROM (SELECT max(seq) - count(*) AS g "
           "FROM envelopes GROUP BY agent_id) x")
# an agent's stored envelopes up to a seq (params: agent, seq)
COUNT_OF_AGENT_UPTO = ("SELECT count(*) FROM envelopes WHERE agent_id = %s "
                       "AND seq <= %s")
# envelopes received before their agent's previous seq
COUNT_RECEIVED_OUT_OF_ORDER = (
    "SELECT count(*) FROM (SELECT received_at < lag(received_at) OVER "
    "(PARTITION BY agent_id ORDER BY seq) AS back FROM envelopes) x WHERE back")
# seqs sealed with a clock that jumped (ClockStatus.JUMPED), and sent-at going backwards by seq
SEQS_CLOCK_JUMPED = "SELECT seq FROM envelopes WHERE clock_status = 2 ORDER BY seq"
COUNT_SENT_BACKWARDS = (
    "SELECT count(*) FROM (SELECT sent_at < lag(sent_at) OVER (ORDER BY seq) AS b "
    "FROM envelopes) x WHERE b")
