-- Per agent, the longest gap-free prefix 1..N of stored envelope seqs: what the ingestor may
-- acknowledge as "committed up to N". Kept under a row lock so that several ingestors sharing
-- the load advance it consistently (cloud/ingest/writer.py).
CREATE TABLE agent_progress (
    agent_id       text COLLATE "C" PRIMARY KEY REFERENCES agents,
    committed_upto bigint NOT NULL DEFAULT 0 CHECK (committed_upto >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
