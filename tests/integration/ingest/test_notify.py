"""The notifier against a real HTTP receiver and a real SMTP server (aiosmtpd) on free ports:
signed webhooks, e-mail, retries with backoff after a refusal, dead after max attempts, and
nothing sent twice once delivered."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller

from cloud.alarms.notify import NotifierConfig, deliver_due
from cloud.store.migrate import migrate

pytestmark = pytest.mark.integration
SECRET = b"test-secret"


class Receiver:
    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.refuse = 0  # answer 503 to this many requests first
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.refuse > 0:
                    outer.refuse -= 1
                    self.send_response(503)
                else:
                    outer.got.append((dict(self.headers), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *_a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_dsn, autocommit=True) as c:
        migrate(c)
        yield c


def _event(conn: psycopg.Connection[Any], routes: list[tuple[str, str, str]]) -> None:
    for rid, kind, target in routes:
        conn.execute("INSERT INTO alarm_routes (route_id, kind, target) VALUES (%s, %s, %s)",
                     [rid, kind, target])
    a = conn.execute("INSERT INTO alarms (rule_id, object_id, severity, raised_at, last_at, message)"
                     " VALUES ('tamper', 'M1', 'critical', now(), now(), 'meter flags cover_open')"
                     " RETURNING alarm_id").fetchone()[0]  # type: ignore[index]
    payload = {"alarm_id": a, "event_no": 1, "action": "raise", "rule_id": "tamper", "object_id": "M1",
               "severity": "critical", "evidence": [["gw", 7, "M1", 1]]}
    for rid, _k, _t in routes:
        conn.execute("INSERT INTO alarm_notifications (alarm_id, event_no, route_id, payload)"
                     " VALUES (%s, 1, %s, %s)", [a, rid, json.dumps(payload)])


def test_webhook_and_email_with_retries(conn: psycopg.Connection[Any]) -> None:
    hook = Receiver()
    box = Mailbox()
    with socket.socket() as probe:  # a free port (aiosmtpd's readiness check cannot use 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        _event(conn, [("ops-hook", "webhook", hook.url), ("ops-mail", "smtp", "ops@example.org"),
                      ("bus", "mqtt", "wattrail/alarms")])
        cfg = NotifierConfig(webhook_secret=SECRET, smtp_port=port, backoff_s=0.0, max_attempts=3)
        hook.refuse = 1
        first = deliver_due(conn, cfg)
        assert (first.sent, first.failed) == (1, 1)  # the mail went, the hook answered 503
        err = conn.execute("SELECT attempts, last_error, status FROM alarm_notifications"
                           " WHERE route_id = 'ops-hook'").fetchone()
        assert err == (1, "HTTP 503", "pending")
        second = deliver_due(conn, cfg)
        assert (second.sent, second.failed) == (1, 0)
        assert deliver_due(conn, cfg).sent == 0  # delivered: never again
        (headers, body), = hook.got
        want = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        assert headers["X-Wattrail-Signature"] == want
        assert headers["X-Wattrail-Delivery"] == f"{json.loads(body)['alarm_id']}-1"
        assert json.loads(body)["evidence"] == [["gw", 7, "M1", 1]]
        (mail,) = box.messages
        assert mail.rcpt_tos == ["ops@example.org"]
        assert b"tamper on M1" in mail.content and b"cover_open" not in mail.content.split(b"\r\n\r\n")[0]
        mqtt = conn.execute("SELECT status, attempts FROM alarm_notifications"
                            " WHERE route_id = 'bus'").fetchone()
        assert mqtt == ("pending", 0)  # that channel is not built yet: left for it, not failed
    finally:
        smtp.stop()
        hook.server.shutdown()
        hook.server.server_close()  # the listening socket, or pytest reports it unclosed later


def test_dead_after_max_attempts(conn: psycopg.Connection[Any]) -> None:
    _event(conn, [("gone", "webhook", "http://127.0.0.1:9/nothing-listens")])
    cfg = NotifierConfig(webhook_secret=SECRET, backoff_s=0.0, max_attempts=2, timeout_s=2.0)
    assert deliver_due(conn, cfg).failed == 1
    assert deliver_due(conn, cfg).dead == 1
    assert deliver_due(conn, cfg).dead == 0
    row = conn.execute("SELECT status, attempts, last_error FROM alarm_notifications").fetchone()
    assert row is not None and row[:2] == ("dead", 2) and "refused" in row[2].lower()
