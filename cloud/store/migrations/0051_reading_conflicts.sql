-- Signed readings that could not take their place in `readings` because another row already
-- holds the same (meter_id, ts): an agent whose clock stepped back stamps new readings with
-- instants it already used, or a historical import got there first. Nothing signed is dropped:
-- the row is kept here, with the envelope it came from, for an engineer or auditor to settle.
-- Rare by design (a plain table, not a hypertable).
CREATE TABLE reading_conflicts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meter_id     text COLLATE "C" NOT NULL,
    ts           timestamptz NOT NULL,
    import_wh    double precision,
    export_wh    double precision,
    import_varh  double precision,
    export_varh  double precision,
    v_l1         double precision,
    v_l2         double precision,
    v_l3         double precision,
    i_l1         double precision,
    i_l2         double precision,
    i_l3         double precision,
    i_n          double precision,
    p_w          double precision,
    q_var        double precision,
    pf           double precision,
    freq_hz      double precision,
    status       integer NOT NULL DEFAULT 0,
    quality      smallint NOT NULL DEFAULT 0,
    agent_id     text COLLATE "C" NOT NULL,
    seq          bigint NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reading_conflicts_meter_ts_idx ON reading_conflicts (meter_id, ts);
CREATE INDEX reading_conflicts_envelope_idx ON reading_conflicts (agent_id, seq);
