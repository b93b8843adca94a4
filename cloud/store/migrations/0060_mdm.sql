-- Meter data management (docs/mdm.md): local time per region, tariffs as data, the versioned
-- post-VEE layer beside the raw signed readings (which are never changed), and billing
-- determinants that name the VEE run they were computed from.

-- The region's IANA time zone: its days, months and billing periods are local. NULL: not
-- given yet; VEE and billing refuse such a region and say how to set it.
ALTER TABLE regions ADD COLUMN time_zone text;

-- One row per tariff version; `doc` is the whole validated document (cloud/mdm/tariffs.py).
CREATE TABLE tariffs (
    tariff_id   text COLLATE "C" NOT NULL,
    valid_from  date NOT NULL,
    valid_to    date CHECK (valid_to IS NULL OR valid_to >= valid_from),
    class       text NOT NULL CHECK (class IN ('residential', 'commercial', 'industrial', 'special')),
    currency    text NOT NULL,
    doc         jsonb NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tariff_id, valid_from)
);

-- Which tariff a customer is on, over time (local dates, valid_to inclusive).
CREATE TABLE customer_tariffs (
    customer_id text COLLATE "C" NOT NULL REFERENCES customers,
    tariff_id   text COLLATE "C" NOT NULL,
    valid_from  date NOT NULL,
    valid_to    date CHECK (valid_to IS NULL OR valid_to >= valid_from),
    PRIMARY KEY (customer_id, valid_from)
);

-- One VEE run: the period it validated (UTC range of whole local days), the rules' outcomes.
CREATE TABLE vee_runs (
    run_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    period       text NOT NULL,       -- the local month, YYYY-MM
    period_start timestamptz NOT NULL,
    period_end   timestamptz NOT NULL CHECK (period_end > period_start),
    step_s       integer NOT NULL CHECK (step_s > 0),
    meters       integer NOT NULL,
    params       jsonb NOT NULL,
    rules        jsonb NOT NULL,      -- per rule: ran, why not, intervals failed
    seconds      jsonb NOT NULL,      -- where the time went
    checks       jsonb,               -- the balance meter as a check meter: a summary
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);

-- The post-VEE layer, as exceptions: only intervals a rule flagged or an estimate or an edit
-- changed have a row; every other interval's post-VEE value is its raw value. `version` is
-- the VEE run id for source 'vee' and a fresh number for a manual edit, so the newest manual
-- edit wins, then the newest VEE run covering the interval (cloud/store/mdm_sql.py).
CREATE SEQUENCE vee_edit_version START 1;
CREATE TABLE vee_intervals (
    meter_id   text COLLATE "C" NOT NULL,
    bucket     timestamptz NOT NULL,          -- interval start
    source     text NOT NULL CHECK (source IN ('vee', 'manual')),
    version    bigint NOT NULL,
    run_id     bigint REFERENCES vee_runs,    -- the VEE run (source 'vee')
    raw_kwh    double precision,              -- NULL: missing in the raw readings
    value_kwh  double precision,              -- NULL: still missing after VEE
    flags      integer NOT NULL DEFAULT 0,    -- cloud/mdm/validation.Rule bits
    method     smallint NOT NULL DEFAULT 0,   -- cloud/mdm/estimation.Method (5 = manual)
    check_kwh  double precision,              -- what the balance meter says (check_meter.py)
    edited_by  text,                          -- the API token's name for a manual edit
    reason     text,                          -- mandatory for a manual edit
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (source = 'vee' OR (edited_by IS NOT NULL AND reason IS NOT NULL AND length(reason) > 0)),
    PRIMARY KEY (meter_id, bucket, source, version)
);
SELECT create_hypertable('vee_intervals', by_range('bucket', INTERVAL '30 days'));

-- Per meter and local day: 0 valid, 1 estimated, 2 failed (something still missing, or a
-- review rule failed).
CREATE TABLE vee_days (
    run_id     bigint NOT NULL REFERENCES vee_runs ON DELETE CASCADE,
    meter_id   text COLLATE "C" NOT NULL,
    day        date NOT NULL,
    status     smallint NOT NULL CHECK (status BETWEEN 0 AND 2),
    flags      integer NOT NULL,
    intervals  integer NOT NULL,
    estimated  integer NOT NULL,
    missing    integer NOT NULL,
    PRIMARY KEY (run_id, meter_id, day)
);

CREATE TABLE billing_runs (
    run_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    period      text NOT NULL,                -- local month, YYYY-MM
    vee_run_id  bigint NOT NULL REFERENCES vee_runs,
    customers   integer NOT NULL,
    seconds     jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per customer, period and tariff version in force (two when a tariff changes within
-- the period: a bill's proration lines).
CREATE TABLE billing_determinants (
    run_id          bigint NOT NULL REFERENCES billing_runs ON DELETE CASCADE,
    customer_id     text COLLATE "C" NOT NULL,
    meter_id        text COLLATE "C" NOT NULL,
    tariff_id       text COLLATE "C" NOT NULL,
    tariff_from     date NOT NULL,
    first_day       date NOT NULL,
    last_day        date NOT NULL,
    currency        text NOT NULL,
    kwh_by_period   jsonb NOT NULL,
    total_kwh       double precision NOT NULL,
    export_kwh      double precision NOT NULL,
    kvarh           double precision,
    max_kw          double precision,
    max_kw_at       timestamptz,
    demand_window_s integer NOT NULL,
    estimated_share double precision,
    intervals       integer NOT NULL,
    missing         integer NOT NULL,
    amount          double precision,             -- NULL: incomplete, not billable
    vee_status      text NOT NULL CHECK (vee_status IN ('valid', 'estimated', 'failed')),
    PRIMARY KEY (run_id, customer_id, tariff_id, tariff_from)
);
