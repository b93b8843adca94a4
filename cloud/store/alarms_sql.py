"""The SQL of alarms (cloud/alarms): rules, the meters' facts the rules need, tracks, the
alarm lifecycle and the notification outbox."""

RULES = "SELECT definition FROM alarm_rules ORDER BY rule_id"
RULE_COUNT = "SELECT count(*) FROM alarm_rules"
UPSERT_RULE = (
    "INSERT INTO alarm_rules (rule_id, kind, severity, enabled, definition, updated_by)"
    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (rule_id) DO UPDATE SET kind = EXCLUDED.kind,"
    " severity = EXCLUDED.severity, enabled = EXCLUDED.enabled, definition = EXCLUDED.definition,"
    " updated_at = now(), updated_by = EXCLUDED.updated_by")

# what a rule needs to know of each meter: kind, scope, PV, special, its transformer's rating
METER_INFO = """
SELECT m.meter_id, m.kind, f.region_id, c.class, coalesce(c.has_pv, false), coalesce(c.is_special, false),
       coalesce(c.transformer_id, m.transformer_id, tb.transformer_id),
       CASE WHEN m.kind = 'balance' THEN tb.rating_kva * 1000 END
FROM meters m
LEFT JOIN customers c ON c.customer_id = m.customer_id
LEFT JOIN transformers tb ON tb.transformer_id = coalesce(c.transformer_id, m.transformer_id)
                          OR (m.kind = 'balance' AND tb.balance_meter_id = m.meter_id)
LEFT JOIN feeders f ON f.feeder_id = coalesce(tb.feeder_id, m.feeder_id)
WHERE m.meter_id = ANY(%s)
"""

TRACKS = ("SELECT rule_id, object_id, state FROM alarm_tracks"
          " WHERE (rule_id, object_id) IN (SELECT * FROM unnest(%s::text[], %s::text[])) FOR UPDATE")
UPSERT_TRACK = ("INSERT INTO alarm_tracks (rule_id, object_id, state) VALUES (%s, %s, %s)"
                " ON CONFLICT (rule_id, object_id) DO UPDATE SET state = EXCLUDED.state")

OPEN_ALARM = ("SELECT alarm_id FROM alarms WHERE rule_id = %s AND object_id = %s"
              " AND state <> 'cleared' FOR UPDATE")
INSERT_ALARM = (
    "INSERT INTO alarms (rule_id, object_id, region_id, severity, raised_at, last_at, message, value)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING alarm_id")
REPEAT_ALARM = ("UPDATE alarms SET repeats = repeats + 1, last_at = greatest(last_at, %s), message = %s,"
                " value = %s WHERE alarm_id = %s")
CLEAR_ALARM = ("UPDATE alarms SET state = 'cleared', cleared_at = %s, cleared_by = %s,"
               " last_at = greatest(last_at, %s) WHERE alarm_id = %s")
ACK_ALARM = ("UPDATE alarms SET state = 'acknowledged', acknowledged_at = now(), acknowledged_by = %s,"
             " ack_comment = %s WHERE alarm_id = %s AND state = 'active' RETURNING alarm_id")
LOCK_ALARM = ("SELECT state, rule_id, object_id, severity, region_id FROM alarms WHERE alarm_id = %s"
              " FOR UPDATE")
INSERT_EVENT = (
    "INSERT INTO alarm_events (alarm_id, event_no, action, at, actor, detail, evidence)"
    " VALUES (%(a)s, (SELECT coalesce(max(event_no), 0) + 1 FROM alarm_events WHERE alarm_id = %(a)s),"
    " %(action)s, %(at)s, %(actor)s, %(detail)s, %(evidence)s) RETURNING event_no")

SEVERITY_RANK = "ARRAY['warning', 'minor', 'major', 'critical']"
ROUTE_EVENT = (
    "INSERT INTO alarm_notifications (alarm_id, event_no, route_id, payload)"
    " SELECT %(a)s, %(e)s, route_id, %(payload)s FROM alarm_routes"
    f" WHERE enabled AND array_position({SEVERITY_RANK}, %(sev)s)"
    f" >= array_position({SEVERITY_RANK}, min_severity)"
    " AND (region_id IS NULL OR region_id = %(region)s)")

LIST_ALARMS = (
    "SELECT alarm_id, rule_id, object_id, region_id, severity, state, raised_at, last_at, repeats,"
    " message, value, acknowledged_by, ack_comment, cleared_at, cleared_by FROM alarms"
    " WHERE (%(state)s::text IS NULL OR state = %(state)s) AND (%(rule)s::text IS NULL OR rule_id = %(rule)s)"
    " ORDER BY alarm_id DESC LIMIT %(limit)s")
EVENTS = ("SELECT event_no, action, at, actor, detail, evidence FROM alarm_events WHERE alarm_id = %s"
          " ORDER BY event_no")

DUE_NOTIFICATIONS = (
    "SELECT n.notification_id, n.route_id, r.kind, r.target, n.payload, n.attempts"
    " FROM alarm_notifications n JOIN alarm_routes r USING (route_id)"
    " WHERE n.status = 'pending' AND n.next_at <= now() AND r.kind = ANY(%s)"
    " ORDER BY n.notification_id LIMIT %s"
    " FOR UPDATE OF n SKIP LOCKED")
NOTIFICATION_SENT = ("UPDATE alarm_notifications SET status = 'sent', sent_at = now(),"
                     " attempts = attempts + 1, last_error = NULL WHERE notification_id = %s")
NOTIFICATION_FAILED = (
    "UPDATE alarm_notifications SET attempts = attempts + 1, last_error = %s,"
    " status = CASE WHEN attempts + 1 >= %s THEN 'dead' ELSE 'pending' END,"
    " next_at = now() + make_interval(secs => %s) WHERE notification_id = %s")
