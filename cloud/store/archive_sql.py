"""The SQL the archive checks (cloud/archive) run on the readings: what each meter's stored
readings say over a period, and when the newest reading is."""

# One row per meter with valid readings in [start, end]: first and last, count, whether any
# reading carries an L2/L3 voltage, the export register's increase, peak kW and kVA, and how
# often the import register fell back by more than `reset` Wh (a replaced meter starts again).
METER_SUMMARY = """
SELECT meter_id,
       extract(epoch FROM min(ts)) AS first_ts, extract(epoch FROM max(ts)) AS last_ts,
       count(*) AS n,
       bool_or(v_l2 IS NOT NULL OR v_l3 IS NOT NULL) AS three,
       coalesce(max(export_wh) - min(export_wh), 0) AS export_wh,
       max(p_w) / 1000.0 AS peak_kw,
       max(sqrt(p_w * p_w + coalesce(q_var, 0) * coalesce(q_var, 0))) / 1000.0 AS peak_kva,
       count(*) FILTER (WHERE drop > %(reset)s) AS resets
FROM (SELECT meter_id, ts, v_l2, v_l3, export_wh, p_w, q_var,
             lag(import_wh) OVER (PARTITION BY meter_id ORDER BY ts) - import_wh AS drop
      FROM readings
      WHERE ts >= %(start)s AND ts <= %(end)s AND quality = 0) r
GROUP BY meter_id
"""

# The newest reading of anyone: where a check's default period ends.
LATEST_READING = "SELECT max(ts) FROM readings"

# The open connectivity suspicions of the latest archive check, to mark results resting on a
# suspected meter: add `AND cs.meter_id = ...` or a transformer condition on `cs`.
OPEN_SUSPICIONS = ("SELECT 1 FROM connectivity_suspicions cs WHERE cs.status = 'open' "
                   "AND cs.check_id = (SELECT max(check_id) FROM archive_checks)")
# of a loss row aliased `l`: a transformer a suspicion names, as recorded or as suggested
TX_SUSPECT = (f"(l.level = 'transformer' AND EXISTS ({OPEN_SUSPICIONS} AND "
              "(cs.recorded_transformer_id = l.entity_id OR cs.suggested_transformer_id = l.entity_id)))")
# of a suspect row aliased `s`
METER_SUSPECT = f"EXISTS ({OPEN_SUSPICIONS} AND cs.meter_id = s.meter_id)"

# The voltages and currents of meters the archive does not know, for placing them by their
# voltage: valid readings in [start, end], in time order.
UNKNOWN_METER_SERIES = (
    "SELECT meter_id, extract(epoch FROM ts), v_l1, v_l2, v_l3, i_l1, i_l2, i_l3 FROM readings"
    " WHERE meter_id = ANY(%(ids)s) AND ts >= %(start)s AND ts <= %(end)s AND quality = 0"
    " ORDER BY meter_id, ts")
