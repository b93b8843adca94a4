"""Every query on the `readings` table (cloud/store/migrations/0004_readings.sql), in one place.

The ingestor, the analytics, the API and the demo and campaign checks run these; none writes
SQL on `readings` of its own, so a change to the table is a change to this file. Pure text:
the callers own their connections (sync or async). Parameters are psycopg placeholders.
"""

from __future__ import annotations

from protocols.reading import MEASURED_FIELDS

_COLS = ", ".join(MEASURED_FIELDS)

# --- ingest (cloud/ingest/writer.py): staged signed readings into the table
INSERT_SIGNED_FROM_STAGE = (
    f"INSERT INTO readings (meter_id, ts, {_COLS}, status, quality, provenance, agent_id, "
    f"seq) SELECT meter_id, to_timestamp(ts_ms / 1000.0), {_COLS}, status, quality, "
    "'signed', agent_id, seq FROM ingest_stage ON CONFLICT (meter_id, ts) DO NOTHING")

# the values a stored row and a staged row must share to be the same reading
_SAME = " AND ".join(f"r.{f} IS NOT DISTINCT FROM s.{f}"
                     for f in (*MEASURED_FIELDS, "status", "quality"))
_S_COLS = ", ".join(f"s.{f}" for f in MEASURED_FIELDS)
# the staged rows of this batch's envelopes (params: agent ids, seqs) that did not become a
# readings row go aside: every staged row but one per stored row (the one with its key and
# values, `min(ctid)`: which of several equal rows it names does not matter)
CONFLICTS_FROM_STAGE = (
    "WITH won AS (SELECT min(s.ctid) AS id FROM ingest_stage s JOIN readings r "
    "  ON r.meter_id = s.meter_id AND r.ts = to_timestamp(s.ts_ms / 1000.0) "
    f"  AND r.agent_id = s.agent_id AND r.seq = s.seq AND {_SAME} "
    "  GROUP BY s.agent_id, s.seq, s.meter_id, s.ts_ms) "
    f"INSERT INTO reading_conflicts (meter_id, ts, {_COLS}, status, quality, agent_id, seq) "
    f"SELECT s.meter_id, to_timestamp(s.ts_ms / 1000.0), {_S_COLS}, "
    "s.status, s.quality, s.agent_id, s.seq FROM ingest_stage s "
    "JOIN unnest(%s::text[], %s::int8[]) AS b(agent_id, seq) "  # this batch's rows only
    "  ON b.agent_id = s.agent_id AND b.seq = s.seq "
    "WHERE s.ctid NOT IN (SELECT id FROM won) ORDER BY s.ctid")

# --- analytics (cloud/analytics/data/fetch.py)
def copy_window(floats: tuple[str, ...]) -> str:
    """A binary COPY of `floats` (NaN for NULL, so every row has one width), status and
    quality of the meters numbered by {ids} (a text[] placeholder, 1-based) in [{lo}, {hi});
    the braces are filled with psycopg.sql literals by the caller."""
    return ("COPY (SELECT (m.idx - 1)::int4, r.ts, "
            + ", ".join(f"coalesce(r.{f}, 'NaN')" for f in floats)
            + ", r.status, r.quality FROM readings r"
            " JOIN unnest({ids}::text[]) WITH ORDINALITY AS m(meter_id, idx)"
            " ON r.meter_id = m.meter_id COLLATE \"C\""
            " WHERE r.ts >= {lo} AND r.ts < {hi}) TO STDOUT (FORMAT BINARY)")


# each sampled meter's median spacing of consecutive readings in [%(s)s, %(e)s], %(n)s meters
MEDIAN_SPACING = (
    "WITH m AS (SELECT DISTINCT meter_id FROM readings WHERE ts >= %(s)s AND ts <= %(e)s"
    " ORDER BY meter_id LIMIT %(n)s),"
    " d AS (SELECT r.meter_id, extract(epoch FROM r.ts - lag(r.ts) OVER w) AS gap"
    " FROM readings r JOIN m USING (meter_id) WHERE r.ts >= %(s)s AND r.ts <= %(e)s"
    " WINDOW w AS (PARTITION BY r.meter_id ORDER BY r.ts))"
    " SELECT meter_id, percentile_disc(0.5) WITHIN GROUP (ORDER BY gap) FROM d"
    " WHERE gap > 0 GROUP BY meter_id")

# --- API (cloud/api/routes/)
# a reading as the API and the audit export show it: ts in epoch milliseconds
READING_COLS = ("meter_id, (extract(epoch FROM ts) * 1000)::bigint AS ts_ms, " + _COLS
                + ", status, quality, provenance, agent_id, seq, import_batch")
# the rows an agent's envelopes in [seq, seq_max] stored, and those at the (meter, ts) keys they
# claim (stored by another envelope or an import): params agent, lo, hi, hi, meters, stamps
OF_ENVELOPES_AND_KEYS = (
    f"SELECT {READING_COLS} FROM readings WHERE agent_id = %s AND seq >= %s "
    "AND (%s::int8 IS NULL OR seq <= %s) "
    f"UNION SELECT {READING_COLS} FROM readings r "
    "JOIN unnest(%s::text[], %s::timestamptz[]) AS k(m, t) ON r.meter_id = k.m AND r.ts = k.t "
    "ORDER BY 1, 2")
# raw readings of one meter, with units in the names; the caller adds WHERE / ORDER / LIMIT
RAW = ("SELECT ts, import_wh, export_wh, import_varh, export_varh, v_l1 AS v_l1_v, "
       "v_l2 AS v_l2_v, v_l3 AS v_l3_v, i_l1 AS i_l1_a, i_l2 AS i_l2_a, i_l3 AS i_l3_a, "
       "i_n AS i_n_a, p_w, q_var, pf, freq_hz, status, quality, provenance, agent_id, seq "
       "FROM readings r")
METER_KNOWN = ("SELECT EXISTS (SELECT 1 FROM meters WHERE meter_id = %(m)s) "
               "OR EXISTS (SELECT 1 FROM readings WHERE meter_id = %(m)s) AS known")
COUNT_OF_ENVELOPE = "SELECT count(*) AS n FROM readings WHERE agent_id = %s AND seq = %s"
PROVENANCE_AT = ("SELECT meter_id, ts, provenance, agent_id, seq, import_batch FROM readings "
                 "WHERE meter_id = %s AND ts = %s")

# --- demo and campaign checks (wattrail/)
COUNT_BY_QUALITY = "SELECT quality, count(*) FROM readings GROUP BY 1"
COUNT_AND_DISTINCT_KEYS = "SELECT count(*), count(DISTINCT (meter_id, ts)) FROM readings"
# readings (stored or kept aside as conflicts) from envelopes whose clock was flagged
COUNT_FROM_CLOCK_FLAGGED = (
    "SELECT count(*) FROM (SELECT agent_id, seq FROM readings UNION ALL "
    "SELECT agent_id, seq FROM reading_conflicts) r JOIN envelopes e USING (agent_id, seq) "
    "WHERE e.clock_status = 2")
