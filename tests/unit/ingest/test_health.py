"""The ingestor's health verdict and the retry-or-isolate decision, without any service."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from cloud.ingest.health import judge, make_app
from cloud.ingest.pipeline import is_retryable


@pytest.mark.parametrize(("alive", "age", "tlog", "problem"), [
    (True, 0.2, None, None),
    (True, 59.0, True, None),
    (False, 0.1, None, "worker not running"),
    (True, 61.0, None, "worker stuck: last beat 61.0 s ago"),
    (True, 0.1, False, "tlog sequencer not running"),
])
def test_verdicts(alive: bool, age: float, tlog: bool | None, problem: str | None) -> None:
    h = judge(worker_alive=alive, last_beat_s_ago=age, stale_after_s=60.0, tlog_alive=tlog)
    assert h.ok is (problem is None)
    assert (problem is None and h.problems == []) or (problem and problem in h.problems[0])


def call(app: Any, path: str) -> tuple[str, bytes]:
    got: list[str] = []
    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": ""},
                        lambda status, _headers: got.append(status)))
    return got[0], body


def test_healthz_says_503_with_the_reason_and_metrics_stay_served() -> None:
    state = {"alive": True}
    app = make_app(lambda: judge(worker_alive=state["alive"], last_beat_s_ago=0.0,
                                 stale_after_s=60.0))
    status, body = call(app, "/healthz")
    assert status.startswith("200") and json.loads(body)["status"] == "ok"
    state["alive"] = False
    status, body = call(app, "/healthz")
    assert status.startswith("503")
    assert json.loads(body)["problems"] == ["worker not running: nothing is stored or acknowledged"]
    status, body = call(app, "/metrics")
    assert status.startswith("200") and b"python_info" in body


@pytest.mark.parametrize(("exc", "retry"), [
    (psycopg.OperationalError("connection refused"), True),
    (psycopg.errors.AdminShutdown("terminating connection"), True),
    (psycopg.errors.DeadlockDetected("deadlock"), True),
    (psycopg.errors.SerializationFailure("could not serialize"), True),
    # class 54 is an OperationalError by psycopg's table, but the statement's data caused it:
    # retrying would block the ingestor on one message forever
    (psycopg.errors.ProgramLimitExceeded("index row size 3000 exceeds maximum 2704"), False),
    (psycopg.errors.DatetimeFieldOverflow("timestamp out of range"), False),
    (psycopg.errors.CharacterNotInRepertoire("invalid byte sequence 0x00"), False),
    (psycopg.InterfaceError("the connection is closed"), False),  # with a live connection
    (OverflowError("int too big to convert"), False),
    (RuntimeError("a bug"), False),
])
def test_retry_only_what_the_database_will_heal(exc: BaseException, retry: bool) -> None:
    assert is_retryable(exc, None) is retry


def test_an_error_on_a_broken_connection_is_retried() -> None:
    class Broken:
        broken, closed = True, False

    assert is_retryable(psycopg.InterfaceError("the connection is lost"), Broken())  # type: ignore[arg-type]
    assert not is_retryable(RuntimeError("a bug"), Broken())  # type: ignore[arg-type]
