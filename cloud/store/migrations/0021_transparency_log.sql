-- The transparency log (RFC 9162 Merkle tree) over every stored envelope. Leaves are
-- appended by one sequencer at a time (cloud/ingest/tlog.py, under an advisory lock), so
-- indexes are gap-free; the tree's frontier is kept here so that signing a head never needs
-- to read every leaf. Leaf hash = SHA-256(0x00 || raw envelope bytes).
CREATE TABLE tlog_leaves (
    idx         bigint PRIMARY KEY CHECK (idx >= 0),
    agent_id    text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    leaf_hash   bytea NOT NULL CHECK (length(leaf_hash) = 32),
    appended_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (agent_id, seq)
);

CREATE TABLE tlog_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    size      bigint NOT NULL CHECK (size >= 0),
    frontier  jsonb NOT NULL
);
INSERT INTO tlog_state (size, frontier) VALUES (0, '[]');

CREATE TABLE tlog_tree_heads (
    tree_size    bigint PRIMARY KEY CHECK (tree_size >= 0),
    timestamp_ms bigint NOT NULL,
    root_hash    bytea NOT NULL CHECK (length(root_hash) = 32),
    signature    bytea NOT NULL,
    key_id       bytea NOT NULL,
    signed_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX envelopes_unlogged_idx ON envelopes (received_at, agent_id, seq)
    WHERE log_index IS NULL;
