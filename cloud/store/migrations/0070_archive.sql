-- The customer archive's health (cloud/archive): completeness checks with their findings and
-- per-region counts (tracked over time), connectivity suspicions from the data, and the log of
-- corrections an engineer accepted. The archive itself is never changed by a check.

CREATE TABLE archive_checks (
    check_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL CHECK (period_end > period_start),
    step_s        integer NOT NULL CHECK (step_s > 0),
    parameters    jsonb NOT NULL,         -- thresholds of both analyses
    notes         jsonb NOT NULL,         -- what could not run and why
    findings      integer NOT NULL,
    suspicions    integer NOT NULL
);
CREATE INDEX archive_checks_finished_idx ON archive_checks (finished_at DESC, check_id DESC);

CREATE TABLE archive_findings (
    check_id   bigint NOT NULL REFERENCES archive_checks ON DELETE CASCADE,
    finding_no integer NOT NULL,
    kind       text NOT NULL,
    object_id  text COLLATE "C" NOT NULL,
    region_id  text COLLATE "C",
    severity   text NOT NULL CHECK (severity IN ('high', 'medium', 'low')),
    evidence   jsonb NOT NULL,
    fix        text NOT NULL,
    PRIMARY KEY (check_id, finding_no)
);
CREATE INDEX archive_findings_kind_idx ON archive_findings (check_id, kind, finding_no);

CREATE TABLE archive_finding_counts (
    check_id  bigint NOT NULL REFERENCES archive_checks ON DELETE CASCADE,
    region_id text COLLATE "C" NOT NULL,   -- '' = the finding has no region (unknown meter)
    kind      text NOT NULL,
    n         integer NOT NULL CHECK (n > 0),
    PRIMARY KEY (check_id, region_id, kind)
);

CREATE TABLE connectivity_suspicions (
    check_id                 bigint NOT NULL REFERENCES archive_checks ON DELETE CASCADE,
    meter_id                 text COLLATE "C" NOT NULL,
    rank                     integer NOT NULL CHECK (rank >= 1),
    kind                     text NOT NULL CHECK (kind IN ('transformer', 'phase')),
    recorded_transformer_id  text COLLATE "C" NOT NULL,
    recorded_phase           smallint CHECK (recorded_phase BETWEEN 0 AND 2),
    suggested_transformer_id text COLLATE "C" NOT NULL,
    suggested_phase          smallint CHECK (suggested_phase BETWEEN 0 AND 2),
    confidence               double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    evidence                 jsonb NOT NULL,
    status                   text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'accepted', 'superseded')),
    PRIMARY KEY (check_id, meter_id),
    UNIQUE (check_id, rank)
);
CREATE INDEX connectivity_suspicions_meter_idx ON connectivity_suspicions (meter_id, check_id DESC);

-- Append-only: a correction is a fact about who changed the archive when; an UPDATE or DELETE
-- would rewrite that history, so both are refused (recompute_run_id is set once, by the insert).
CREATE TABLE archive_corrections (
    correction_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    actor            text NOT NULL,
    meter_id         text COLLATE "C" NOT NULL,
    check_id         bigint REFERENCES archive_checks ON DELETE SET NULL,
    old              jsonb NOT NULL,       -- {transformer_id, phase} before
    new              jsonb NOT NULL,       -- after
    comment          text NOT NULL DEFAULT '',
    recompute_run_id bigint REFERENCES analysis_runs ON DELETE SET NULL
);
CREATE FUNCTION archive_corrections_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.recompute_run_id IS NULL AND NEW.recompute_run_id IS NOT NULL
       AND NEW.correction_id = OLD.correction_id AND NEW.at = OLD.at AND NEW.actor = OLD.actor
       AND NEW.meter_id = OLD.meter_id AND NEW.old = OLD.old AND NEW.new = OLD.new THEN
        RETURN NEW;  -- the loss report's rerun, recorded once after the correction
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.check_id IS NOT NULL AND NEW.check_id IS NULL
       AND NEW.correction_id = OLD.correction_id THEN
        RETURN NEW;  -- ON DELETE SET NULL of an expired check
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.recompute_run_id IS NOT NULL AND NEW.recompute_run_id IS NULL
       AND NEW.correction_id = OLD.correction_id THEN
        RETURN NEW;  -- ON DELETE SET NULL of an expired analysis run
    END IF;
    RAISE EXCEPTION 'archive_corrections is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER archive_corrections_append_only BEFORE UPDATE OR DELETE ON archive_corrections
    FOR EACH ROW EXECUTE FUNCTION archive_corrections_append_only();
