-- The evidence: signed envelopes exactly as received, and what could not be accepted.

CREATE TABLE envelopes (
    agent_id    text COLLATE "C" NOT NULL REFERENCES agents,
    seq         bigint NOT NULL CHECK (seq >= 0),
    raw         bytea NOT NULL,          -- the bytes as received; never re-encoded
    sha256      bytea NOT NULL CHECK (length(sha256) = 32),
    key_id      bytea NOT NULL,
    sent_at     timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    verdict     text NOT NULL,           -- 'accepted', or why it was accepted with a remark
    log_index   bigint UNIQUE,           -- position in the transparency log; NULL until appended
    PRIMARY KEY (agent_id, seq)
);
CREATE INDEX envelopes_received_idx ON envelopes (received_at);

-- Anything the ingestor refused. One row per distinct payload: a replayed junk message bumps
-- count and last_seen instead of growing the table.
CREATE TABLE quarantine (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sha256     bytea NOT NULL UNIQUE CHECK (length(sha256) = 32),
    raw        bytea NOT NULL,
    agent_id   text COLLATE "C",         -- as claimed by the message or its topic: untrusted
    seq        bigint,
    reason     text NOT NULL,            -- machine-readable, e.g. 'bad_signature', 'unknown_key'
    detail     text,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    count      bigint NOT NULL DEFAULT 1 CHECK (count >= 1)
);
CREATE INDEX quarantine_reason_idx ON quarantine (reason, last_seen);

-- One row per imported historical file; its sha256 makes re-importing the same file a no-op.
CREATE TABLE import_batches (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_name   text NOT NULL,
    sha256      bytea NOT NULL UNIQUE CHECK (length(sha256) = 32),
    rows        bigint NOT NULL CHECK (rows >= 0),     -- data lines in the file
    inserted    bigint NOT NULL CHECK (inserted >= 0), -- readings rows it added
    first_ts    timestamptz,
    last_ts     timestamptz,
    imported_at timestamptz NOT NULL DEFAULT now()
);
