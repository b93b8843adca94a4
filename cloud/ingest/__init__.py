"""Ingestors: verify signed envelopes, deduplicate, quarantine, COPY into TimescaleDB and
acknowledge only what is committed."""
