-- A counter that every change of the signing-key registry (`agent_keys`) moves, so running
-- ingestors learn of a revocation or a new key without a restart: each reads this one row
-- before it classifies a batch and reloads its keyring when the number changed
-- (cloud/ingest/service.py). Reading a row, rather than listening for a NOTIFY, cannot miss a
-- change across a reconnect.
--
-- The bump is a deferred constraint trigger: it runs at commit, after every other lock the
-- registering transaction takes, so two registrations at once queue on this row and can never
-- deadlock on it; and a reader that sees the new number also sees the change (same commit).
CREATE TABLE registry_generation (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    generation bigint  NOT NULL
);
INSERT INTO registry_generation (generation) VALUES (0);

CREATE FUNCTION bump_registry_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE registry_generation SET generation = generation + 1;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER agent_keys_bump_generation
    AFTER INSERT OR UPDATE OR DELETE ON agent_keys
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION bump_registry_generation();
