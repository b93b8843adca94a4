-- Readings: cumulative registers and instantaneous values, one row per meter and instant.
-- provenance says where a row came from: 'signed' rows point at their envelope (agent_id, seq),
-- 'imported' rows at their import batch and are never presented as signed.
-- No foreign keys here on purpose: a per-row FK check would halve the COPY rate; the ingestor
-- and the importer check meters and envelopes before they write.

CREATE TABLE readings (
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
    quality      smallint NOT NULL DEFAULT 0 CHECK (quality BETWEEN 0 AND 4),
    provenance   text NOT NULL CHECK (provenance IN ('signed', 'imported')),
    agent_id     text COLLATE "C",
    seq          bigint,
    import_batch bigint,
    CONSTRAINT readings_meter_ts_key UNIQUE (meter_id, ts),
    CONSTRAINT readings_signed_ref CHECK (
        (provenance = 'signed') = (agent_id IS NOT NULL AND seq IS NOT NULL)),
    CONSTRAINT readings_imported_ref CHECK (
        (provenance = 'imported') = (import_batch IS NOT NULL))
);
-- create_default_indexes => false: the default (ts DESC) index would cost ~40% of the COPY
-- rate; time-range scans get chunk exclusion, per-meter scans use the unique index.
SELECT create_hypertable('readings', by_range('ts', INTERVAL '1 day'), create_default_indexes => false);
CREATE INDEX readings_envelope_idx ON readings (agent_id, seq, ts) WHERE agent_id IS NOT NULL;

-- Interval energy per meter, from differences of consecutive cumulative registers
-- (cloud/store/rollups.py fills them; identical whether readings were signed or imported).
CREATE TABLE readings_15m (
    meter_id  text COLLATE "C" NOT NULL,
    bucket    timestamptz NOT NULL,
    import_wh double precision,
    export_wh double precision,
    readings  integer NOT NULL,
    PRIMARY KEY (meter_id, bucket)
);
CREATE TABLE readings_1h (LIKE readings_15m INCLUDING ALL);
CREATE TABLE readings_1d (LIKE readings_15m INCLUDING ALL);
SELECT create_hypertable('readings_15m', by_range('bucket', INTERVAL '7 days'));
SELECT create_hypertable('readings_1h', by_range('bucket', INTERVAL '30 days'));
SELECT create_hypertable('readings_1d', by_range('bucket', INTERVAL '365 days'));
