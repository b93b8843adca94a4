-- Agents and their signing keys. A key signs envelopes from `from_seq` on, between valid_from
-- and valid_to, until revoked_at; the ingestor checks all four before accepting an envelope.

CREATE TABLE agents (
    agent_id    text COLLATE "C" PRIMARY KEY,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);

CREATE TABLE agent_keys (
    agent_id          text COLLATE "C" NOT NULL REFERENCES agents,
    key_id            bytea NOT NULL,
    public_key        bytea NOT NULL CHECK (length(public_key) = 32),  -- raw Ed25519
    certificate_pem   text,
    valid_from        timestamptz NOT NULL,
    valid_to          timestamptz CHECK (valid_to IS NULL OR valid_to > valid_from),
    from_seq          bigint NOT NULL DEFAULT 0 CHECK (from_seq >= 0),
    revoked_at        timestamptz,
    revocation_reason text,
    PRIMARY KEY (agent_id, key_id)
);
-- key ids are derived from the public key, so one id names one key across agents too
CREATE UNIQUE INDEX agent_keys_key_id_idx ON agent_keys (key_id);
