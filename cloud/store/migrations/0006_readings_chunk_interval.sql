-- 7-day chunks for readings instead of 1-day (0004). Measured with bench/historical_import.py
-- (2M rows, 1,000 meters, 3 weeks): binary COPY into the hypertable took 4.35 s with 1-day
-- chunks and 3.67 s with 7-day ones (2.82 s when rows arrive grouped by chunk, which the
-- importer does). Applies to chunks created from now on.
SELECT set_chunk_time_interval('readings', INTERVAL '7 days');
