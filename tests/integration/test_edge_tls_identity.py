"""A wrong or revoked client certificate: the publisher says so clearly and keeps retrying
with backoff, without busy-looping.

- foreign CA: the session's broker, an agent certificate from a CA it never heard of;
- revoked: a private broker (tests/support/broker.py) whose CRL we rewrite and reload with
  SIGHUP, as an operator would after `wattrail pki revoke`; the session broker is shared, so
  its CRL is left alone. The same certificate connects before the revocation, so the failure
  afterwards is the revocation's doing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.outbox import Outbox
from edge.publisher import BrokerConfig, Publisher
from security.pki import init_ca, issue_agent, revoke
from tests.conftest import Services
from tests.support.broker import PrivateBroker

pytestmark = pytest.mark.integration
WATCH_S = 4.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    b = PrivateBroker(tmp_path / "broker")
    yield b
    b.stop()


def watch(pub: Publisher, seconds: float) -> None:
    pub.start()
    try:
        time.sleep(seconds)
    finally:
        pub.stop()


def assert_backs_off(pub: Publisher) -> None:
    attempts = pub.stats.connect_attempts
    # full-jitter backoff from 0.5 s doubling: ~4-6 attempts in 4 s; a busy loop makes hundreds
    assert 2 <= attempts <= 12, f"{attempts} connection attempts in {WATCH_S} s"
    assert pub.stats.connects == 0
    assert pub.stats.connect_failures >= attempts - 1


def test_certificate_from_a_foreign_ca_is_refused_clearly_without_busy_loop(
    services: Services, agent_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    init_ca(tmp_path / "foreign")
    cred = issue_agent(tmp_path / "foreign", agent_id)
    with Outbox(tmp_path / "o.db") as ob:
        ob.append(1, b"env-1", 1)
        pub = Publisher(agent_id, BrokerConfig(services.mqtt_host, services.mqtt_port,
                                               services.ca_cert, cred.tls_cert, cred.tls_key), ob)
        with caplog.at_level(logging.ERROR, logger="wattrail.edge.publisher"):
            watch(pub, WATCH_S)
    assert_backs_off(pub)
    assert "a CA the broker does not trust" in pub.stats.last_error or any(
        "a CA the broker does not trust" in r.getMessage() for r in caplog.records)
    first = caplog.records[0].getMessage()
    assert "rejected our client certificate" in first and str(cred.tls_cert) in first, first
    assert "retrying in" in first


def test_revoked_certificate_is_refused_clearly_without_busy_loop(
    broker: PrivateBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    agent = "agent-revoked-1"
    cred = issue_agent(broker.pki, agent)
    cfg = BrokerConfig("127.0.0.1", broker.port, broker.ca, cred.tls_cert, cred.tls_key)
    with Outbox(tmp_path / "o.db") as ob:
        ok = Publisher(agent, cfg, ob)
        ok.start()
        deadline = time.monotonic() + 10
        while ok.stats.connects == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        ok.stop()
        assert ok.stats.connects == 1, ok.stats.last_error  # valid before the revocation

        revoke(broker.pki, agent)  # writes crl.pem, which the broker's crlfile names
        broker.reload()
        pub = Publisher(agent, cfg, ob)
        with caplog.at_level(logging.ERROR, logger="wattrail.edge.publisher"):
            watch(pub, WATCH_S)
    assert_backs_off(pub)
    messages = [r.getMessage() for r in caplog.records]
    assert messages, "no error was logged"
    assert "it is revoked" in messages[0] and "CERTIFICATE_REVOKED" in messages[0], messages[0]
    assert "revoked" in pub.stats.last_error or any("revoked" in m for m in messages[1:])
