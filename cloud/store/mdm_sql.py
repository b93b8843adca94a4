"""Every query on the meter data management tables (migration 0060): tariffs, customers'
tariffs, the VEE runs and their post-VEE layer, billing runs and determinants; and the
readings the VEE reads. Plain SQL constants (psycopg placeholders), as in readings_sql."""

from __future__ import annotations

# --- customers, their zones and tariffs (cloud/mdm/fetch.py)
# customer meters with the region's time zone; %(r)s: region ids or NULL for all
CUSTOMERS = (
    "SELECT m.meter_id, c.customer_id, f.region_id, r.time_zone, c.class,"
    " c.tariff_per_kwh::float8, c.currency, c.is_special, c.has_pv, c.transformer_id,"
    " c.contract_kva"
    " FROM meters m JOIN customers c USING (customer_id)"
    " JOIN transformers t ON t.transformer_id = c.transformer_id"
    " JOIN feeders f ON f.feeder_id = t.feeder_id JOIN regions r ON r.region_id = f.region_id"
    " WHERE m.kind = 'customer' AND (%(r)s::text[] IS NULL OR f.region_id = ANY(%(r)s))"
    " ORDER BY m.meter_id")
REGIONS_WITHOUT_ZONE = (
    "SELECT region_id FROM regions WHERE time_zone IS NULL"
    " AND (%(r)s::text[] IS NULL OR region_id = ANY(%(r)s)) ORDER BY region_id")
SET_TIME_ZONE = "UPDATE regions SET time_zone = %(tz)s, updated_at = now() WHERE region_id = %(r)s"
SET_TIME_ZONE_WHERE_NONE = (
    "UPDATE regions SET time_zone = %(tz)s, updated_at = now() WHERE time_zone IS NULL")
TARIFFS = "SELECT doc FROM tariffs ORDER BY tariff_id, valid_from"
UPSERT_TARIFF = (
    "INSERT INTO tariffs (tariff_id, valid_from, valid_to, class, currency, doc)"
    " VALUES (%(tariff_id)s, %(valid_from)s, %(valid_to)s, %(class)s, %(currency)s, %(doc)s)"
    " ON CONFLICT (tariff_id, valid_from) DO UPDATE SET valid_to = excluded.valid_to,"
    " class = excluded.class, currency = excluded.currency, doc = excluded.doc,"
    " imported_at = now()")
ASSIGNMENTS = (
    "SELECT customer_id, tariff_id, valid_from, valid_to FROM customer_tariffs"
    " WHERE customer_id = ANY(%(c)s) ORDER BY customer_id, valid_from")
UPSERT_ASSIGNMENT = (
    "INSERT INTO customer_tariffs (customer_id, tariff_id, valid_from, valid_to)"
    " VALUES (%(customer_id)s, %(tariff_id)s, %(valid_from)s, %(valid_to)s)"
    " ON CONFLICT (customer_id, valid_from) DO UPDATE SET tariff_id = excluded.tariff_id,"
    " valid_to = excluded.valid_to")
KNOWN_CUSTOMERS = "SELECT customer_id FROM customers WHERE customer_id = ANY(%(c)s)"
KNOWN_TARIFF_IDS = "SELECT DISTINCT tariff_id FROM tariffs"


def copy_vee_window() -> str:
    """A binary COPY for the VEE: per reading of the meters numbered by {ids} in [{lo}, {hi}],
    the import/export registers, reactive import, L1 voltage (NaN for NULL) and quality, in the
    server's order (the caller checks it); braces filled with psycopg.sql literals. The
    envelopes' clock status comes apart (CLOCK_FLAGGED_IN): a join per reading cost more than
    the rest of the query, for the few envelopes that are flagged."""
    return ("COPY (SELECT (m.idx - 1)::int4, r.ts, coalesce(r.import_wh, 'NaN'),"
            " coalesce(r.export_wh, 'NaN'), coalesce(r.import_varh, 'NaN'),"
            " coalesce(r.v_l1, 'NaN'), r.quality FROM readings r"
            " JOIN unnest({ids}::text[]) WITH ORDINALITY AS m(meter_id, idx)"
            " ON r.meter_id = m.meter_id COLLATE \"C\""
            " WHERE r.ts >= {lo} AND r.ts <= {hi}) TO STDOUT (FORMAT BINARY)")


# the readings of flagged envelopes (clock never synchronised or stepped), through the partial
# index envelopes_clock_flagged_idx and readings_envelope_idx: a handful of rows
CLOCK_FLAGGED_IN = (
    "SELECT r.meter_id, r.ts FROM envelopes e JOIN readings r"
    " ON r.agent_id = e.agent_id AND r.seq = e.seq"
    " WHERE e.clock_status <> 0 AND r.meter_id = ANY(%(m)s) AND r.ts > %(lo)s AND r.ts <= %(hi)s")


CONFLICTS_IN = (
    "SELECT meter_id, ts FROM reading_conflicts WHERE meter_id = ANY(%(m)s)"
    " AND ts > %(lo)s AND ts <= %(hi)s")

# --- VEE runs and the post-VEE layer (cloud/mdm/run.py, write.py)
NEW_VEE_RUN = (
    "INSERT INTO vee_runs (period, period_start, period_end, step_s, meters, params, rules,"
    " seconds) VALUES (%(period)s, %(start)s, %(end)s, %(step)s, %(meters)s, %(params)s, '[]',"
    " '{}')"
    " RETURNING run_id")
FINISH_VEE_RUN = (
    "UPDATE vee_runs SET rules = %(rules)s, seconds = %(seconds)s, meters = %(meters)s,"
    " checks = %(checks)s, finished_at = now() WHERE run_id = %(run)s")
# --- the balance meter as a check meter (cloud/mdm/check_meter.py, run.py)
BALANCE_METERS = (
    "SELECT transformer_id, balance_meter_id FROM transformers"
    " WHERE balance_meter_id IS NOT NULL")
COPY_VEE_INTERVALS = (
    "COPY vee_intervals (meter_id, bucket, source, version, run_id, raw_kwh, value_kwh, flags,"
    " method, check_kwh) FROM STDIN")
COPY_VEE_DAYS = (
    "COPY vee_days (run_id, meter_id, day, status, flags, intervals, estimated, missing)"
    " FROM STDIN")
VEE_RUNS = (
    "SELECT run_id, period_start, period_end, step_s, meters, rules, seconds, started_at,"
    " finished_at FROM vee_runs ORDER BY run_id DESC LIMIT %(n)s")
VEE_RUN = ("SELECT run_id, period_start, period_end, step_s, meters, params, rules, seconds,"
           " started_at, finished_at FROM vee_runs WHERE run_id = %(run)s")
VEE_DAY_COUNTS = ("SELECT status, count(*) FROM vee_days WHERE run_id = %(run)s GROUP BY 1"
                  " ORDER BY 1")
VEE_DAYS_OF_METER = (
    "SELECT day, status, flags, intervals, estimated, missing FROM vee_days"
    " WHERE run_id = %(run)s AND meter_id = %(m)s ORDER BY day")
# every version of a meter's intervals in [lo, hi): raw beside post-VEE, newest first
VEE_HISTORY = (
    "SELECT bucket, source, version, run_id, raw_kwh, value_kwh, flags, method, edited_by,"
    " reason, created_at FROM vee_intervals WHERE meter_id = %(m)s AND bucket >= %(lo)s"
    " AND bucket < %(hi)s ORDER BY bucket, version DESC")
# manual edits over [lo, hi) for the given meters (they win over any VEE run)
MANUAL_EDITS = (
    "SELECT DISTINCT ON (meter_id, bucket) meter_id, bucket, value_kwh, version"
    " FROM vee_intervals WHERE source = 'manual' AND meter_id = ANY(%(m)s)"
    " AND bucket >= %(lo)s AND bucket < %(hi)s ORDER BY meter_id, bucket, version DESC")
NEW_EDIT_VERSION = "SELECT nextval('vee_edit_version')"
INSERT_MANUAL_EDIT = (
    "INSERT INTO vee_intervals (meter_id, bucket, source, version, raw_kwh, value_kwh, flags,"
    " method, edited_by, reason) VALUES (%(m)s, %(bucket)s, 'manual', %(version)s, %(raw)s,"
    " %(value)s, 0, 5, %(by)s, %(reason)s)")
METER_EXISTS = "SELECT EXISTS (SELECT 1 FROM meters WHERE meter_id = %(m)s)"

# --- billing (cloud/mdm/billing.py)
NEW_BILLING_RUN = (
    "INSERT INTO billing_runs (period, vee_run_id, customers, seconds)"
    " VALUES (%(period)s, %(vee)s, %(customers)s, %(seconds)s) RETURNING run_id")
COPY_DETERMINANTS = (
    "COPY billing_determinants (run_id, customer_id, meter_id, tariff_id, tariff_from,"
    " first_day, last_day, currency, kwh_by_period, total_kwh, export_kwh, kvarh, max_kw,"
    " max_kw_at, demand_window_s, estimated_share, intervals, missing, amount, vee_status)"
    " FROM STDIN")
SET_BILLING_SECONDS = "UPDATE billing_runs SET seconds = %(seconds)s WHERE run_id = %(run)s"
LATEST_BILLING_RUN = (
    "SELECT run_id FROM billing_runs WHERE period = %(period)s ORDER BY run_id DESC LIMIT 1")
BILLING_RUN = ("SELECT run_id, period, vee_run_id, customers, seconds, created_at"
               " FROM billing_runs WHERE run_id = %(run)s")
DETERMINANTS = (
    "SELECT customer_id, meter_id, tariff_id, tariff_from, first_day, last_day, currency,"
    " kwh_by_period, total_kwh, export_kwh, kvarh, max_kw, max_kw_at, demand_window_s,"
    " estimated_share, intervals, missing, amount, vee_status FROM billing_determinants"
    " WHERE run_id = %(run)s ORDER BY customer_id, first_day")

# --- the HTTP API (cloud/api/routes/vee.py, billing.py, tariffs.py)
# Keyset pages: `after...` is the sort key of the last row of the previous page (NULL on the
# first page) and `n` one row more than the page holds, so the route knows whether a next page
# exists without a count. Dates are keyed by their day number since 1970-01-01, which a JSON
# cursor carries as an integer.
API_VEE_RUNS = (
    "SELECT run_id, period_start, period_end, step_s, meters, started_at, finished_at"
    " FROM vee_runs WHERE (%(after)s::bigint IS NULL OR run_id < %(after)s)"
    " ORDER BY run_id DESC LIMIT %(n)s")
# a meter's kind and its region's zone (NULL zone: not set, or not a customer meter)
API_METER_ZONE = (
    "SELECT m.kind, r.time_zone FROM meters m LEFT JOIN customers c USING (customer_id)"
    " LEFT JOIN transformers t ON t.transformer_id = c.transformer_id"
    " LEFT JOIN feeders f ON f.feeder_id = t.feeder_id"
    " LEFT JOIN regions r ON r.region_id = f.region_id WHERE m.meter_id = %(m)s")
API_VEE_DAYS = (
    "SELECT day, (day - DATE '1970-01-01') AS day_key, status, flags, intervals, estimated,"
    " missing FROM vee_days WHERE run_id = %(run)s AND meter_id = %(m)s"
    " AND (%(after)s::int IS NULL OR day > DATE '1970-01-01' + %(after)s::int)"
    " ORDER BY day LIMIT %(n)s")
# Every version of a meter's intervals in [lo, hi), per bucket the manual edits first (newest
# first), then the VEE runs' rows (newest first). `in_force`: the version a bill rests on: the
# newest manual edit; without one, the row of the newest VEE run that validated this meter over
# the bucket. A bucket with no row in force (a newer run found the interval valid) is its raw
# value after VEE.
API_VEE_VERSIONS = (
    "SELECT * FROM (SELECT i.bucket, i.source, i.version, i.run_id, i.raw_kwh, i.value_kwh,"
    " i.flags, i.method, i.edited_by, i.reason, i.created_at,"
    " (i.source = 'vee')::int AS source_rank,"
    " CASE WHEN i.source = 'manual' THEN i.version = max(i.version)"
    "  FILTER (WHERE i.source = 'manual') OVER (PARTITION BY i.bucket)"
    " ELSE NOT coalesce(bool_or(i.source = 'manual') OVER (PARTITION BY i.bucket), false)"
    "  AND i.run_id IS NOT DISTINCT FROM (SELECT max(r.run_id) FROM vee_runs r"
    "  WHERE r.period_start <= i.bucket AND i.bucket < r.period_end AND EXISTS ("
    "  SELECT 1 FROM vee_days d WHERE d.run_id = r.run_id AND d.meter_id = i.meter_id)) END"
    " AS in_force"
    " FROM vee_intervals i WHERE i.meter_id = %(m)s AND i.bucket >= %(lo)s AND i.bucket < %(hi)s"
    ") v WHERE (%(a_bucket)s::timestamptz IS NULL"
    " OR (v.bucket, v.source_rank, -v.version) > (%(a_bucket)s, %(a_rank)s, %(a_neg)s))"
    " ORDER BY v.bucket, v.source_rank, v.version DESC LIMIT %(n)s")
# the newest row of the post-VEE layer at one interval: its raw value is the one to keep
API_LATEST_AT_BUCKET = (
    "SELECT raw_kwh, source, version FROM vee_intervals WHERE meter_id = %(m)s"
    " AND bucket = %(bucket)s ORDER BY created_at DESC, version DESC LIMIT 1")
# the readings around one interval [bucket, bucket + step): the raw value is the register
# difference of the readings on its two boundaries (lo, hi include the jitter tolerance)
API_READINGS_AROUND = (
    "SELECT ts, import_wh, quality FROM readings WHERE meter_id = %(m)s"
    " AND ts >= %(lo)s AND ts <= %(hi)s ORDER BY ts")
API_MANUAL_EDIT = (
    "SELECT bucket, source, version, run_id, raw_kwh, value_kwh, flags, method, edited_by,"
    " reason, created_at FROM vee_intervals WHERE meter_id = %(m)s AND bucket = %(bucket)s"
    " AND source = 'manual' AND version = %(version)s")

API_BILLING_RUNS = (
    "SELECT run_id, period, vee_run_id, customers, seconds, created_at FROM billing_runs"
    " WHERE (%(period)s::text IS NULL OR period = %(period)s)"
    " AND (%(after)s::bigint IS NULL OR run_id < %(after)s)"
    " ORDER BY run_id DESC LIMIT %(n)s")
_API_DETERMINANT_COLS = (
    "run_id, customer_id, meter_id, tariff_id, tariff_from, first_day, last_day, currency,"
    " kwh_by_period, total_kwh, export_kwh, kvarh, max_kw, max_kw_at, demand_window_s,"
    " estimated_share, intervals, missing, amount, vee_status")
API_DETERMINANTS = (
    f"SELECT {_API_DETERMINANT_COLS}, (first_day - DATE '1970-01-01') AS day_key"
    " FROM billing_determinants WHERE run_id = %(run)s"
    " AND (%(c)s::text IS NULL OR customer_id = %(c)s)"
    " AND (%(a_c)s::text IS NULL"
    " OR (customer_id, first_day) > (%(a_c)s, DATE '1970-01-01' + %(a_day)s::int))"
    " ORDER BY customer_id, first_day LIMIT %(n)s")
API_CUSTOMER_DETERMINANTS = (
    f"SELECT {_API_DETERMINANT_COLS} FROM billing_determinants"
    " WHERE run_id = %(run)s AND customer_id = %(c)s ORDER BY first_day")

API_TARIFFS = (
    "SELECT tariff_id, valid_from, (valid_from - DATE '1970-01-01') AS day_key, valid_to,"
    " class AS tariff_class, currency, doc, imported_at FROM tariffs"
    " WHERE (%(t)s::text IS NULL OR tariff_id = %(t)s) AND (%(a_t)s::text IS NULL"
    " OR (tariff_id, valid_from) > (%(a_t)s, DATE '1970-01-01' + %(a_day)s::int))"
    " ORDER BY tariff_id, valid_from LIMIT %(n)s")
# a customer's assignments, each with whether any version of its tariff is stored
API_CUSTOMER_TARIFFS = (
    "SELECT a.customer_id, a.tariff_id, a.valid_from,"
    " (a.valid_from - DATE '1970-01-01') AS day_key, a.valid_to,"
    " EXISTS (SELECT 1 FROM tariffs t WHERE t.tariff_id = a.tariff_id) AS tariff_known"
    " FROM customer_tariffs a WHERE a.customer_id = %(c)s"
    " AND (%(after)s::int IS NULL OR a.valid_from > DATE '1970-01-01' + %(after)s::int)"
    " ORDER BY a.valid_from LIMIT %(n)s")
