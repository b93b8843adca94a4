-- How much of each loss result rests on estimates: the customers' energy in intervals the
-- analytics marked ESTIMATED (bridged short gaps, and post-VEE estimates where a VEE run covers
-- the period: cloud/analytics/data/vee_fill.py). NULL for runs made before this column.
ALTER TABLE analysis_loss ADD COLUMN estimated_wh double precision;
