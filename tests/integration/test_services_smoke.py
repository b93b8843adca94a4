"""The ground is real: TimescaleDB answers with hypertables, Mosquitto enforces mTLS and ACLs.

Each test here would fail if the database lacked TimescaleDB, if the broker accepted a client
without a certificate or with one from a foreign CA, or if an agent could write under another
agent's id.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ClientCert, Services
from tests.support.mqtt import MqttTestClient

pytestmark = pytest.mark.integration

NOT_AUTHORIZED = 0x87


@pytest.fixture
def clients(services: Services) -> Iterator[Callable[..., MqttTestClient]]:
    made: list[MqttTestClient] = []

    def make(cert: ClientCert | None = None, *, ca: Path | None = None,
             cert_path: Path | None = None, key_path: Path | None = None) -> MqttTestClient:
        c = MqttTestClient(
            services.mqtt_host, services.mqtt_port, ca or services.ca_cert,
            cert=cert.cert if cert else cert_path, key=cert.key if cert else key_path,
        )
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def test_timescaledb_hypertable_roundtrip(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        version = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        assert version is not None, "the TimescaleDB extension is not installed"
        assert re.fullmatch(r"2\.\d+\.\d+", version[0]), version
        server = conn.execute("SHOW server_version_num").fetchone()
        assert server is not None and int(server[0]) >= 170000, server
        print(f"TimescaleDB {version[0]} on PostgreSQL {int(server[0]) // 10000}")

        conn.execute("CREATE TABLE t (ts timestamptz NOT NULL, meter text, wh double precision)")
        conn.execute("SELECT create_hypertable('t', by_range('ts', INTERVAL '1 day'))")
        t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        rows = [(t0 + dt.timedelta(minutes=15 * i), "m1", float(i)) for i in range(4 * 24 * 3)]
        with conn.cursor() as cur, cur.copy("COPY t (ts, meter, wh) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        chunks = conn.execute("SELECT count(*) FROM show_chunks('t')").fetchone()
        assert chunks is not None and chunks[0] == 3, "three days must land in three daily chunks"
        daily = conn.execute(
            "SELECT time_bucket('1 day', ts) AS d, count(*), sum(wh) FROM t GROUP BY d ORDER BY d"
        ).fetchall()
        assert [r[1] for r in daily] == [96, 96, 96]
        assert sum(r[2] for r in daily) == sum(r[2] for r in rows)


def test_mqtt_v5_roundtrip_over_mtls(
    clients: Callable[..., MqttTestClient], issue_client_cert: Callable[[str], ClientCert],
    agent_id: str,
) -> None:
    ingestor = clients(issue_client_cert("wattrail-ingestor"))
    assert ingestor.connect()
    group = uuid.uuid4().hex[:8]
    codes = ingestor.subscribe(f"$share/{group}/wattrail/v1/{agent_id}/readings", qos=1)
    assert [c.value for c in codes] == [1], codes

    agent = clients(issue_client_cert(agent_id))
    assert agent.connect()
    assert agent.connack is not None and agent.connack.value == 0
    payload = b"\xa1\x63seq\x01"  # any bytes: the broker must deliver them unchanged
    puback = agent.publish(f"wattrail/v1/{agent_id}/readings", payload, qos=1)
    assert puback is not None and puback.value == 0, puback

    got = ingestor.receive(timeout=10)
    assert got is not None, "the ingestor did not receive the agent's message"
    assert got.topic == f"wattrail/v1/{agent_id}/readings"
    assert got.payload == payload
    assert got.qos == 1

    # the ack path: the ingestor writes under the agent's ack topic, the agent reads it
    assert [c.value for c in agent.subscribe(f"wattrail/v1/{agent_id}/ack", qos=1)] == [1]
    ack = ingestor.publish(f"wattrail/v1/{agent_id}/ack", b"committed:1", qos=1)
    assert ack is not None and ack.value == 0, ack
    back = agent.receive(timeout=10)
    assert back is not None and back.payload == b"committed:1"


def test_client_without_certificate_is_refused(clients: Callable[..., MqttTestClient]) -> None:
    anonymous = clients()
    assert anonymous.connect(timeout=5) is False


def _foreign_client_cert(tmp: Path, cn: str) -> tuple[Path, Path]:
    """A CA nobody told the broker about, and a client certificate it signed."""
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Mallory CA")])
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "foreign.crt", tmp / "foreign.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_client_with_foreign_ca_certificate_is_refused(
    clients: Callable[..., MqttTestClient], tmp_path: Path, agent_id: str,
) -> None:
    # Same CN as a legitimate agent: only the signature chain tells them apart.
    cert, key = _foreign_client_cert(tmp_path, agent_id)
    mallory = clients(cert_path=cert, key_path=key)
    assert mallory.connect(timeout=5) is False


def test_agent_cannot_write_or_read_under_another_agents_id(
    clients: Callable[..., MqttTestClient], issue_client_cert: Callable[[str], ClientCert],
    agent_id: str,
) -> None:
    victim = f"{agent_id}-victim"
    ingestor = clients(issue_client_cert("wattrail-ingestor"))
    assert ingestor.connect()
    ingestor.subscribe(f"$share/{uuid.uuid4().hex[:8]}/wattrail/v1/{victim}/readings")

    attacker = clients(issue_client_cert(agent_id))
    assert attacker.connect()
    puback = attacker.publish(f"wattrail/v1/{victim}/readings", b"forged", qos=1)
    assert puback is not None and puback.value == NOT_AUTHORIZED, puback
    assert ingestor.receive(timeout=2) is None, "a forged publish was delivered"

    # Nor may it read the victim's acks. Mosquitto 2.0 grants the SUBSCRIBE and filters at
    # delivery time, so what we assert is the thing that matters: nothing reaches it.
    sub = attacker.subscribe(f"wattrail/v1/{victim}/ack")
    assert len(sub) == 1
    sent = ingestor.publish(f"wattrail/v1/{victim}/ack", b"committed:7", qos=1)
    assert sent is not None and sent.value == 0, sent
    assert attacker.receive(timeout=2) is None, "an agent received another agent's ack"

    # and it may not forge acks, even under its own id: only the cloud writes those
    ack = attacker.publish(f"wattrail/v1/{agent_id}/ack", b"committed:999", qos=1)
    assert ack is not None and ack.value == NOT_AUTHORIZED, ack
