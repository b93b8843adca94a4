"""Reading the post-VEE layer for the analytics (cloud/analytics/data/vee_fill.py)."""

from __future__ import annotations

# the newest finished VEE run on this step that covers [%(lo)s, %(hi)s)
VEE_RUN_COVERING = (
    "SELECT run_id FROM vee_runs WHERE finished_at IS NOT NULL AND step_s = %(step)s"
    " AND period_start <= %(lo)s AND period_end >= %(hi)s ORDER BY run_id DESC LIMIT 1")
# per (meter, interval) the post-VEE value where VEE estimated or a person edited it: the
# newest manual edit wins, then the given VEE run
ESTIMATES = (
    "SELECT DISTINCT ON (meter_id, bucket) meter_id, bucket, value_kwh FROM vee_intervals"
    " WHERE meter_id = ANY(%(m)s) AND bucket >= %(lo)s AND bucket < %(hi)s AND method <> 0"
    " AND ((source = 'vee' AND run_id = %(run)s) OR source = 'manual')"
    " ORDER BY meter_id, bucket, (source = 'manual') DESC, version DESC")
