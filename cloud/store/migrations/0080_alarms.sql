-- Alarms (cloud/alarms, docs/alarms.md): rules as data, one alarm per (rule, object) while it is
-- up, its history of events with the signed evidence behind each, the streaming rules' state,
-- and the notification outbox the notifier delivers from. Events, state and outbox rows are
-- written in the transaction that stores the readings that caused them.

CREATE TABLE alarm_rules (
    rule_id    text COLLATE "C" PRIMARY KEY,
    kind       text NOT NULL,
    severity   text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning')),
    enabled    boolean NOT NULL DEFAULT true,
    definition jsonb NOT NULL,        -- the whole rule as cloud.alarms.rules.Rule validates it
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);

CREATE TABLE alarms (
    alarm_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id         text COLLATE "C" NOT NULL,
    object_id       text COLLATE "C" NOT NULL,     -- a meter, or a transformer
    region_id       text COLLATE "C",
    severity        text NOT NULL,
    state           text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'acknowledged', 'cleared')),
    raised_at       timestamptz NOT NULL,          -- the reading's time that raised it
    last_at         timestamptz NOT NULL,
    repeats         integer NOT NULL DEFAULT 0,
    message         text NOT NULL,
    value           double precision,
    acknowledged_at timestamptz,
    acknowledged_by text,
    ack_comment     text,
    cleared_at      timestamptz,
    cleared_by      text,                           -- 'data' or who cleared it by hand
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- one alarm per (rule, object) while it is up: a storm is one alarm with repeats
CREATE UNIQUE INDEX alarms_open_uq ON alarms (rule_id, object_id) WHERE state <> 'cleared';
CREATE INDEX alarms_state_idx ON alarms (state, alarm_id DESC);

CREATE TABLE alarm_events (
    alarm_id  bigint NOT NULL REFERENCES alarms ON DELETE CASCADE,
    event_no  integer NOT NULL,
    action    text NOT NULL CHECK (action IN ('raise', 'repeat', 'clear', 'acknowledge', 'manual_clear')),
    at        timestamptz NOT NULL,
    actor     text NOT NULL,                        -- 'data' or a person
    detail    text NOT NULL DEFAULT '',
    evidence  jsonb NOT NULL DEFAULT '[]',          -- [[agent_id, seq, meter_id, ts_ms], ...]
    PRIMARY KEY (alarm_id, event_no)
);

CREATE TABLE alarm_tracks (
    rule_id    text COLLATE "C" NOT NULL,
    object_id  text COLLATE "C" NOT NULL,
    state      jsonb NOT NULL,                      -- cloud.alarms.engine.Track
    PRIMARY KEY (rule_id, object_id)
);

-- where notifications go: routed by severity (this or worse) and region (NULL: all); the
-- secrets (HMAC key, SMTP password) are the notifier's configuration, never stored here
CREATE TABLE alarm_routes (
    route_id     text COLLATE "C" PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('webhook', 'smtp', 'mqtt')),
    target       text NOT NULL,                     -- URL, e-mail address(es), MQTT topic
    min_severity text NOT NULL DEFAULT 'warning' CHECK (min_severity IN ('critical', 'major', 'minor', 'warning')),
    region_id    text COLLATE "C",
    enabled      boolean NOT NULL DEFAULT true
);

CREATE TABLE alarm_notifications (
    notification_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id        bigint NOT NULL REFERENCES alarms ON DELETE CASCADE,
    event_no        integer NOT NULL,
    route_id        text COLLATE "C" NOT NULL REFERENCES alarm_routes ON DELETE CASCADE,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_at         timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    sent_at         timestamptz,
    UNIQUE (alarm_id, event_no, route_id)
);
CREATE INDEX alarm_notifications_due_idx ON alarm_notifications (next_at) WHERE status = 'pending';
