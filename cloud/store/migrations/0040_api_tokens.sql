-- Bearer tokens for the query API (cloud/api/tokens.py). Only SHA-256 of a token is stored:
-- a leaked table does not let anyone call the API, and a token is shown once, at creation.
-- The tokens are 256 random bits, so an unsalted fast hash is enough (no dictionary to attack).

CREATE TABLE api_tokens (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role        text NOT NULL CHECK (role IN ('engineer', 'auditor', 'admin')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_tokens_active_idx ON api_tokens (name) WHERE revoked_at IS NULL;
