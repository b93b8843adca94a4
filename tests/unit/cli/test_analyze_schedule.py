"""`wattrail analyze --every 15m --window 1d`: duration parsing, the window each run analyses,
and the loop (runs on time, survives failed runs, stops on the event) without a database."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from wattrail.cli import app
from wattrail.commands.analytics import parse_duration, run_schedule, schedule_window

LOG = logging.getLogger("test.schedule")


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("1d", 86400), ("2w", 1_209_600),
    ("1.5h", 5400), (" 15M ", 900), ("1d12h", 129_600),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "15", "m", "15x", "0m", "-5m", "1h 30m", "h1", "15m!", "1e3s"])
def test_bad_durations_say_the_format(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 15m"):
        parse_duration(text)


def test_window_ends_on_the_last_step_boundary() -> None:
    now = datetime(2026, 3, 1, 10, 7, 31, tzinfo=UTC)
    start, end = schedule_window(now, timedelta(days=1), 900)
    assert end == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert start == datetime(2026, 2, 28, 10, 0, tzinfo=UTC)
    assert schedule_window(end, timedelta(hours=1), 900)[1] == end  # on a boundary: itself


def test_runs_the_last_window_each_time_and_survives_failures() -> None:
    clock = iter(datetime(2026, 3, 1, h, 5, tzinfo=UTC) for h in range(10))
    seen: list[tuple[datetime, datetime]] = []

    def run(start: datetime, end: datetime) -> str:
        seen.append((start, end))
        if len(seen) == 2:
            raise ConnectionError("database down")
        return "ok"

    runs, failures = run_schedule(run, every=timedelta(0), window=timedelta(hours=6), step_s=900,
                                  stop=threading.Event(), log=LOG, now=lambda: next(clock),
                                  max_runs=3)
    assert (runs, failures) == (3, 1)
    assert [e.hour for _, e in seen] == [0, 1, 2]  # the failed run did not stop the schedule
    assert all(e - s == timedelta(hours=6) for s, e in seen)


def test_waits_the_interval_between_runs_and_stops_at_once_on_the_event() -> None:
    stop = threading.Event()
    starts: list[float] = []

    def run(start: datetime, end: datetime) -> str:
        starts.append(time.monotonic())
        if len(starts) == 2:
            threading.Timer(0.2, stop.set).start()  # SIGTERM during the (1 h) wait
        return "ok"

    t0 = time.monotonic()
    runs, failures = run_schedule(run, every=timedelta(seconds=0.3), window=timedelta(days=1),
                                  step_s=900, stop=stop, log=LOG)
    elapsed = time.monotonic() - t0
    assert (runs, failures) == (2, 0)
    assert starts[1] - starts[0] >= 0.29  # the interval is from start to start
    assert elapsed < 5


def test_a_stopped_schedule_runs_nothing() -> None:
    stop = threading.Event()
    stop.set()
    assert run_schedule(lambda s, e: "x", every=timedelta(minutes=15), window=timedelta(days=1),
                        step_s=900, stop=stop, log=LOG) == (0, 0)


runner = CliRunner()


@pytest.mark.parametrize("args", [
    pytest.param(["--every", "15m", "--from", "2026-01-01"], id="every-with-from"),
    pytest.param(["--every", "soon"], id="bad-every"),
    pytest.param(["--every", "15m", "--window", "a-day"], id="bad-window"),
    pytest.param(["--to", "2026-01-02"], id="batch-without-from"),
    pytest.param(["--from", "2026-01-01"], id="batch-without-to"),
])
def test_usage_errors_exit_2(args: list[str]) -> None:
    res = runner.invoke(app, ["analyze", "--dsn", "postgresql://127.0.0.1:1/none", *args])
    assert res.exit_code == 2, res.output


def test_the_scheduler_logs_failed_runs_and_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wattrail.analytics.schedule")
    res = runner.invoke(app, ["analyze", "--dsn", "postgresql://127.0.0.1:1/none", "--every", "0.05s",
                              "--window", "1h", "--runs", "2"])
    assert res.exit_code == 0, res.output
    failed = [r for r in caplog.records if "failed: OperationalError" in r.getMessage()]
    assert len(failed) == 2
    assert "stopped after 2 run(s), 2 failed" in caplog.text
