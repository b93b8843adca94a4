-- Only on the Timescale-licensed build (migrate.py skips *.tsl.sql on the Apache build and
-- says so): native compression of raw readings older than a week. Untested in CI, where only
-- the Apache build runs.
ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'meter_id',
    timescaledb.compress_orderby = 'ts'
);
SELECT add_compression_policy('readings', INTERVAL '7 days');
