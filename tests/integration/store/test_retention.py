from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from cloud.store.migrate import migrate
from cloud.store.retention import drop_old_readings

pytestmark = pytest.mark.integration


def test_drop_old_readings_keeps_recent_rows_and_envelopes(db_dsn: str) -> None:
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    with psycopg.connect(db_dsn) as conn:
        migrate(conn)
        with conn.transaction(), conn.cursor() as cur, cur.copy(
                "COPY readings (meter_id, ts, import_wh, provenance, import_batch) FROM STDIN"
        ) as cp:
            for day in range(0, 60):
                cp.write_row(("M1", now - dt.timedelta(days=day), float(day), "imported", 1))
        dropped = drop_old_readings(conn, 30, now=now)
        assert dropped, "60 days of data and a 30-day horizon must drop something"
        oldest = conn.execute("SELECT min(ts), count(*) FROM readings").fetchone()
        assert oldest is not None
        assert oldest[0] >= now - dt.timedelta(days=30 + 7), "only whole old chunks go"
        assert oldest[1] >= 30, "rows inside the horizon are kept"
        with pytest.raises(ValueError, match="keep_days"):
            drop_old_readings(conn, 0)
