"""The cloud side: `ingest` (verify, deduplicate, quarantine, store, acknowledge), `store`
(TimescaleDB schema, migrations, queries), `analytics` (Numba kernels and their references)
and `api` (the FastAPI query layer).
"""
