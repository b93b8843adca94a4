"""Every query on the `quarantine` table (cloud/store/migrations/0003_evidence.sql), in one place.

The ingestor, the API and the demo and campaign checks run these; none writes SQL on
`quarantine` of its own, so a change to the table is a change to this file. Pure text: the
callers own their connections (sync or async). Parameters are psycopg placeholders. (The
per-agent budget, `quarantine_usage`, is the ingestor's own: cloud/ingest/writer.py.)
"""

from __future__ import annotations

# --- ingest (cloud/ingest/writer.py)
# a message seen before (param: sha256): one more arrival, no bytes stored again
COUNT_AGAIN = ("UPDATE quarantine SET count = count + 1, last_seen = now() "
               "WHERE sha256 = %s")
# params: sha256, raw, agent_id, seq, reason, detail, size_bytes, truncated
INSERT = ("INSERT INTO quarantine (sha256, raw, agent_id, seq, reason, detail, size_bytes, "
          "truncated) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (sha256) DO UPDATE SET "
          "count = quarantine.count + 1, last_seen = now()")

# --- API (cloud/api/routes/audit.py)
# distinct messages claiming an agent, by reason (param: agent)
COUNT_BY_REASON_OF_AGENT = ("SELECT reason, count(*) AS n FROM quarantine WHERE agent_id = %s "
                            "GROUP BY reason")
# an agent's conflicts, first 100 (param: agent)
CONFLICTS_OF_AGENT = ("SELECT seq, id AS quarantine_id, detail, count, last_seen FROM quarantine "
                      "WHERE agent_id = %s AND reason = 'conflict' ORDER BY seq, id LIMIT 100")
# a quarantined message as the API shows it (the claimed agent id named as such)
_PUBLIC = ("SELECT q.id, q.reason, q.detail, q.agent_id AS claimed_agent_id, q.seq, q.sha256, "
           "q.size_bytes, q.truncated, q.count, q.first_seen, q.last_seen")
# the listing; the caller adds WHERE / ORDER / LIMIT on `q`
LIST = _PUBLIC + " FROM quarantine q"
# one message with its bytes (param: id)
WITH_RAW_BY_ID = _PUBLIC + ", q.raw FROM quarantine q WHERE q.id = %s"

# --- demo and campaign checks (wattrail/)
COUNT = "SELECT count(*) FROM quarantine"
HASH_REASON_COUNT = "SELECT sha256, reason, count FROM quarantine"
# arrivals (a repeat counts again), in all and by reason
ARRIVALS = "SELECT coalesce(sum(count), 0) FROM quarantine"
ARRIVALS_BY_REASON = "SELECT reason, sum(count) FROM quarantine GROUP BY 1"
