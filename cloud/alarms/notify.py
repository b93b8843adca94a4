"""Deliver the notification outbox (`alarm_notifications`): webhooks signed with HMAC-SHA256
and e-mail over SMTP, retried with exponential backoff, dead after `max_attempts`.

Each due row is locked (`FOR UPDATE SKIP LOCKED`, so several notifiers share the work), sent,
and marked in the same transaction: a notifier killed mid-send leaves the row pending and it is
sent again. Delivery is therefore at least once; every request carries the idempotency key
`X-Wattrail-Delivery: <alarm_id>-<event_no>` (the e-mail its Message-ID) so a receiver drops a
repeat. Routes of kind `mqtt` are left pending: that channel is not built yet (docs/alarms.md).

Webhook: `POST` of the event's JSON; `X-Wattrail-Signature: sha256=<hex HMAC of the body>`
with the notifier's secret; any 2xx is delivered, anything else (or no answer within
`timeout_s`) is a failed attempt with the reason kept in `last_error`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import psycopg

from cloud.store import alarms_sql

SUPPORTED = ("webhook", "smtp")


@dataclass(frozen=True)
class NotifierConfig:
    webhook_secret: bytes = b""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_from: str = "wattrail@localhost"
    smtp_user: str | None = None
    smtp_password: str | None = None
    timeout_s: float = 10.0
    max_attempts: int = 8
    backoff_s: float = 5.0  # first retry after this, doubling, at most backoff_cap_s
    backoff_cap_s: float = 1800.0
    batch: int = 100


@dataclass
class Delivered:
    sent: int = 0
    failed: int = 0
    dead: int = 0


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _webhook(cfg: NotifierConfig, url: str, key: str, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-Wattrail-Delivery": key,
        "X-Wattrail-Signature": signature(cfg.webhook_secret, body)})
    with urllib.request.urlopen(req, timeout=cfg.timeout_s) as resp:
        if not 200 <= resp.status < 300:
            raise OSError(f"HTTP {resp.status}")


def _email(cfg: NotifierConfig, to: str, key: str, payload: dict[str, Any]) -> None:
    msg = EmailMessage()
    msg["From"] = cfg.smtp_from
    msg["To"] = to
    msg["Subject"] = (f"[{payload.get('severity', '')}] {payload.get('action', '')}: "
                      f"{payload.get('rule_id', '')} on {payload.get('object_id', '')}")
    msg["Message-ID"] = f"<alarm-{key}@wattrail>"
    msg.set_content(json.dumps(payload, indent=1, sort_keys=True))
    with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s) as s:
        if cfg.smtp_user:
            s.starttls()
            s.login(cfg.smtp_user, cfg.smtp_password or "")
        s.send_message(msg)


def _why(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    return f"{type(exc).__name__}: {exc}"[:500]


def deliver_due(conn: psycopg.Connection[Any], cfg: NotifierConfig) -> Delivered:
    """One pass over the due rows (at most `cfg.batch`)."""
    out = Delivered()
    with conn.transaction():
        rows = conn.execute(alarms_sql.DUE_NOTIFICATIONS, [list(SUPPORTED), cfg.batch]).fetchall()
        for nid, _route, kind, target, payload, attempts in rows:
            key = f"{payload.get('alarm_id')}-{payload.get('event_no')}"
            try:
                if kind == "webhook":
                    _webhook(cfg, target, key, payload)
                else:
                    _email(cfg, target, key, payload)
            except (OSError, smtplib.SMTPException) as exc:
                delay = min(cfg.backoff_cap_s, cfg.backoff_s * 2 ** attempts)
                conn.execute(alarms_sql.NOTIFICATION_FAILED, [_why(exc), cfg.max_attempts, delay, nid])
                if attempts + 1 >= cfg.max_attempts:
                    out.dead += 1
                else:
                    out.failed += 1
                continue
            conn.execute(alarms_sql.NOTIFICATION_SENT, [nid])
            out.sent += 1
    return out
