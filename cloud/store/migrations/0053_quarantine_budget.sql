-- Quarantine keeps evidence, not whatever an attacker sends: each row records the size of the
-- message it stands for, and whether only a prefix of its bytes was kept (`truncated`): an
-- oversized message, or one past its agent's quarantine budget (cloud/ingest/writer.py).
-- Its SHA-256 is always of the whole message, so the bytes can still be matched later.
ALTER TABLE quarantine
    ADD COLUMN size_bytes bigint,
    ADD COLUMN truncated  boolean NOT NULL DEFAULT false;
UPDATE quarantine SET size_bytes = length(raw);
ALTER TABLE quarantine ALTER COLUMN size_bytes SET NOT NULL;

-- Bytes of quarantined messages kept whole, per agent (the agent of the MQTT topic, which
-- the broker's ACL ties to the sender's certificate; '' for messages on no agent's topic).
CREATE TABLE quarantine_usage (
    agent_key  text COLLATE "C" PRIMARY KEY,
    bytes      bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    truncated  bigint NOT NULL DEFAULT 0 CHECK (truncated >= 0),  -- messages kept as prefix only
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO quarantine_usage (agent_key, bytes)
    SELECT coalesce(agent_id, ''), sum(length(raw)) FROM quarantine GROUP BY 1;
