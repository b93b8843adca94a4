-- Analytics results (cloud/analytics/store_results.py writes them, the API reads them).
-- One analysis run = one batch over a period and optional regions. Every result row belongs to
-- its run and runs are never updated, so what the API served stays explainable; the same data
-- gives the same rows (input_sha256 shows two runs saw the same data). Retention: deleting a
-- run deletes its rows (ON DELETE CASCADE). Plain tables, not hypertables: a run's rows are
-- read together by run_id, not scanned by time.

CREATE TABLE analysis_runs (
    run_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    period_start      timestamptz NOT NULL,
    period_end        timestamptz NOT NULL CHECK (period_end > period_start),
    step_s            integer NOT NULL CHECK (step_s > 0),
    regions           text[] COLLATE "C",          -- the filter asked for; NULL = every region
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz NOT NULL,
    parameters        jsonb NOT NULL,              -- step, tolerance, thresholds, code versions
    meters            integer NOT NULL,            -- customer meters analysed
    transformers      integer NOT NULL,
    feeders           integer NOT NULL,
    expected_readings bigint NOT NULL,             -- every meter (customer, balance, head) x instants
    present_readings  bigint NOT NULL,
    completeness      double precision NOT NULL CHECK (completeness BETWEEN 0 AND 1),
    input_sha256      bytea NOT NULL CHECK (length(input_sha256) = 32),  -- of the Feed arrays
    seconds           jsonb NOT NULL               -- fetch / kernels / write, for operators
);
-- "latest run for this period"; the latest run overall is the primary key's last entry
CREATE INDEX analysis_runs_period_idx ON analysis_runs (period_end DESC, run_id DESC);

-- Energy balance over the whole period, per transformer / feeder / region. Feeders and regions:
-- energy_in is the feeder-head meter(s); technical_wh, ntl_wh and revenue_at_risk are the sums
-- over their transformers (ntl_sigma_wh in quadrature), so loss_wh - technical_wh - ntl_wh is
-- the MV line loss and unmetered use above the transformers, which no model here explains.
CREATE TABLE analysis_loss (
    run_id          bigint NOT NULL REFERENCES analysis_runs ON DELETE CASCADE,
    level           text NOT NULL CHECK (level IN ('transformer', 'feeder', 'region')),
    entity_id       text COLLATE "C" NOT NULL,
    energy_in_wh    double precision,              -- NULL: no input reading at all
    energy_out_wh   double precision,              -- customers' net (import - export)
    loss_wh         double precision,
    loss_pct        double precision,
    technical_wh    double precision,
    ntl_wh          double precision,
    ntl_sigma_wh    double precision,
    completeness    double precision NOT NULL,     -- share of expected readings present
    low_confidence  boolean NOT NULL,              -- completeness below the run's threshold
    revenue_at_risk double precision,              -- max(NTL, 0) x mean tariff, in the archive currency
    PRIMARY KEY (run_id, level, entity_id)
);
-- "latest run, worst-N transformers by NTL" is an index range scan
CREATE INDEX analysis_loss_worst_idx ON analysis_loss (run_id, level, ntl_wh DESC NULLS LAST);

-- The same per interval (interval_start .. interval_start + the run's step_s).
CREATE TABLE analysis_loss_intervals (
    run_id          bigint NOT NULL REFERENCES analysis_runs ON DELETE CASCADE,
    level           text NOT NULL CHECK (level IN ('transformer', 'feeder', 'region')),
    entity_id       text COLLATE "C" NOT NULL,
    interval_start  timestamptz NOT NULL,
    energy_in_wh    double precision,
    energy_out_wh   double precision,
    loss_wh         double precision,
    loss_pct        double precision,
    technical_wh    double precision,
    ntl_wh          double precision,
    ntl_sigma_wh    double precision,
    completeness    double precision NOT NULL,
    low_confidence  boolean NOT NULL,
    revenue_at_risk double precision,
    PRIMARY KEY (run_id, level, entity_id, interval_start)
);

-- Every customer meter of the run, ranked (rank 1 = most suspect; ties by meter id). All of
-- them, not only suspects: evaluation needs every score, and the API filters on score.
CREATE TABLE analysis_suspects (
    run_id         bigint NOT NULL REFERENCES analysis_runs ON DELETE CASCADE,
    meter_id       text COLLATE "C" NOT NULL,
    transformer_id text COLLATE "C" NOT NULL,
    rank           integer NOT NULL CHECK (rank >= 1),
    score          double precision NOT NULL CHECK (score BETWEEN 0 AND 1),
    estimated_wh   double precision,               -- from the meter's own data
    allocated_wh   double precision,               -- its share of the transformer's NTL
    evidence       jsonb NOT NULL,                 -- {evidence, indicators, period}, see docs/analytics.md
    PRIMARY KEY (run_id, meter_id),
    UNIQUE (run_id, rank)                          -- "suspects by rank"
);
CREATE INDEX analysis_suspects_tx_idx ON analysis_suspects (run_id, transformer_id, rank);

-- Power-quality problems found (rows only where there is one).
--   overload:  transformer, value = peak loading S / rating, intervals = intervals over 1.0,
--              started_at/ended_at = its longest run
--   voltage:   customer meter, value = share of instants with a phase outside 230 V +/- 10 %
--   imbalance: transformer, value = mean current imbalance, share above 20 % in details
CREATE TABLE analysis_power_quality (
    run_id     bigint NOT NULL REFERENCES analysis_runs ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('overload', 'voltage', 'imbalance')),
    level      text NOT NULL CHECK (level IN ('transformer', 'meter')),
    entity_id  text COLLATE "C" NOT NULL,
    value      double precision NOT NULL,
    intervals  integer,
    started_at timestamptz,
    ended_at   timestamptz,
    details    jsonb NOT NULL,
    PRIMARY KEY (run_id, kind, entity_id)
);
CREATE INDEX analysis_power_quality_worst_idx ON analysis_power_quality (run_id, kind, value DESC);

-- Outages localised to a transformer or a feeder. ended_at is the first instant seen back up;
-- NULL when still out at the end of the period.
CREATE TABLE analysis_outages (
    run_id     bigint NOT NULL REFERENCES analysis_runs ON DELETE CASCADE,
    level      text NOT NULL CHECK (level IN ('transformer', 'feeder')),
    entity_id  text COLLATE "C" NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at   timestamptz,
    instants   integer NOT NULL CHECK (instants >= 1),
    PRIMARY KEY (run_id, level, entity_id, started_at)
);

-- Per region: consumption summary and a next-day forecast with its held-out error.
CREATE TABLE analysis_regions (
    run_id           bigint NOT NULL REFERENCES analysis_runs ON DELETE CASCADE,
    region_id        text COLLATE "C" NOT NULL,
    energy_wh        double precision NOT NULL,     -- customers' net over the period
    peak_interval_wh double precision,
    peak_at          timestamptz,
    daily_wh         double precision[] NOT NULL,   -- per whole UTC day of the period
    profile_wh       double precision[] NOT NULL,   -- mean by interval of the day
    forecast_wh      double precision[],            -- the day after the period; NULL < 2 days
    holdout_mae_wh   double precision,              -- last day held out; NULL < 3 days
    holdout_mape_pct double precision,
    PRIMARY KEY (run_id, region_id)
);
