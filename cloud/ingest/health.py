"""The ingestor's health, served as `GET /healthz` beside `/metrics` on `--metrics-port`.

Why a heartbeat and not "the process answers": the HTTP server runs on a thread of its own,
so it kept answering (and a healthcheck on /metrics kept passing) after the worker thread had
died on one poisoned envelope and nothing was stored any more. The worker therefore beats, a
monotonic timestamp it writes at the top of every loop: at least every 0.1 s while idle (the
queue wait), after every batch, and before every backoff wait while the database is down.

    worker thread not running                  -> 503 "worker not running"
    last beat older than `stale_after_s`       -> 503 "worker stuck" (a statement that never
                                                  returns, a hang in our own code)
    transparency-log thread configured, dead   -> 503 "tlog sequencer not running"
    otherwise                                  -> 200

A database outage is not unhealthy: the worker is doing what it should (holding the batch
unacknowledged, retrying), and restarting the process would not bring the database back. It
shows in the body (`db_retries`) and in `wattrail_ingest_db_retries_total`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, make_wsgi_app

STALE_AFTER_S = 60.0  # a batch of 500 envelopes commits in well under a second


@dataclass(frozen=True)
class Health:
    ok: bool
    problems: list[str]
    worker_alive: bool
    last_beat_s_ago: float
    stale_after_s: float
    details: dict[str, Any] = field(default_factory=dict)


def judge(*, worker_alive: bool, last_beat_s_ago: float, stale_after_s: float,
          tlog_alive: bool | None = None, details: dict[str, Any] | None = None) -> Health:
    """The verdict from what the ingestor observed (pure; `tlog_alive` None: not configured)."""
    problems = []
    if not worker_alive:
        problems.append("worker not running: nothing is stored or acknowledged")
    elif last_beat_s_ago > stale_after_s:
        problems.append(f"worker stuck: last beat {last_beat_s_ago:.1f} s ago "
                        f"(limit {stale_after_s:g} s)")
    if tlog_alive is False:
        problems.append("tlog sequencer not running: no new tree heads are signed")
    return Health(not problems, problems, worker_alive, round(last_beat_s_ago, 3),
                  stale_after_s, details or {})


Environ = dict[str, Any]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def make_app(health: Callable[[], Health]) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    """/healthz: the verdict as JSON (200 or 503); every other path: Prometheus metrics."""
    metrics = make_wsgi_app(REGISTRY)

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        h = health()
        body = json.dumps({"status": "ok" if h.ok else "unhealthy", **asdict(h)}).encode()
        start_response("200 OK" if h.ok else "503 Service Unavailable",
                       [("Content-Type", "application/json"),
                        ("Content-Length", str(len(body)))])
        return [body]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in progress never holds up the process's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a healthcheck every few seconds would flood the log


def serve(host: str, port: int, health: Callable[[], Health]
          ) -> tuple[WSGIServer, threading.Thread]:
    """Serve /healthz and /metrics on a daemon thread; `port` 0 picks a free one."""
    server = make_server(host, port, make_app(health), _Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="ingest-http", daemon=True)
    thread.start()
    return server, thread
