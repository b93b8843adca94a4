-- The agent's own verdict on its clock when it sealed the envelope (protocols.envelope.ClockStatus:
-- 0 synced, 1 never synchronised, 2 stepped since the previous envelope). Readings inherit it
-- through (agent_id, seq): timestamps across a step are compared with care, seq order still holds.
ALTER TABLE envelopes ADD COLUMN clock_status smallint NOT NULL DEFAULT 0
    CHECK (clock_status BETWEEN 0 AND 2);
CREATE INDEX envelopes_clock_flagged_idx ON envelopes (agent_id, seq) WHERE clock_status <> 0;
