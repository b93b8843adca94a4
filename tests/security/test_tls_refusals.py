"""Security campaign, TLS: who may not talk to the broker, and what a valid agent may not do.

Every attempt runs against a *private* Mosquitto built from the very pieces `scripts/services`
uses for the shared one (its test CA with `ensure_ca`, its generated `mosquitto_config`, with
`crlfile`, the same ACL file), so the CRL rewrite and the SIGHUP here disturb no other test.

- no certificate, a certificate from a foreign CA, an expired one and a not-yet-valid one
  (both signed by the broker's own CA): N attempts each, 100% refused;
- revoked: the certificate connects, then its serial is added to `ca.crl` (re-signed by the
  CA) and the broker gets SIGHUP, as an operator would; from then on N attempts, 100% refused.
  Mosquitto 2.0.11 re-reads the CRL on SIGHUP (it reloads every listener's TLS settings), so
  no restart is needed: the test proves it with the same process id before and after;
- a valid agent publishing under another agent's topics: PUBACK 0x87 (not authorized) every
  time, 0 delivered to the cloud's subscriber;
- a valid agent subscribing to another agent's topics: Mosquitto 2.0 grants the SUBACK and
  filters at delivery, so the proof is 0 of N messages delivered (the SUBACK code is reported).
The control for all of it: a valid certificate connects every time, and the same identities'
own traffic is delivered.

Each refused attempt is probed with a raw TLS socket and a hand-written MQTT v5 CONNECT, so
what is recorded is what the broker did (TLS alert, closed connection, or a CONNACK code).
"""

from __future__ import annotations

import datetime as dt
import importlib.machinery
import importlib.util
import os
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocols.topics import topic
from tests.support.mqtt import MqttTestClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
N = 20  # attempts per refused kind (and per cross-agent message kind)
CONNECT_TIMEOUT_S = 5.0
VERDICT_WAIT_S = 0.2  # how long an accepted TLS client waits for a late alert


def _load_services_script() -> ModuleType:
    """scripts/services as a module (it has no .py suffix), to reuse its CA and config code."""
    path = REPO / "scripts" / "services"
    loader = importlib.machinery.SourceFileLoader("wattrail_services_script", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


svc = _load_services_script()


@dataclass
class Broker:
    state: Path
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def tls(self) -> Path:
        return self.state / "tls"

    @property
    def ca(self) -> Path:
        return self.tls / "ca.crt"

    @property
    def log(self) -> Path:
        return self.state / "mosquitto" / "mosquitto.log"

    def reload(self) -> None:
        """SIGHUP to the broker's pid, as an operator does after publishing a new CRL."""
        self.proc.send_signal(signal.SIGHUP)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    state = tmp_path_factory.mktemp("tls-broker")
    svc.ensure_ca(state / "tls")
    assert "crlfile" in (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    port = svc.free_port()
    conf = svc.mosquitto_config(state, port)
    assert f"crlfile {state / 'tls' / 'ca.crl'}" in conf.read_text()
    # not daemonised (-d): we own the process, so SIGHUP and the final SIGTERM reach our pid
    with open(state / "mosquitto.stderr", "wb") as err:
        proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=err)
    try:
        svc.wait_tls(port, state / "tls" / "ca.crt", svc.issue_cert(state / "tls", "probe-ready"))
        yield Broker(state, port, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- certificates --------------------------------------------------------------------------------
def issue(tls: Path, cn: str, *, not_before: dt.datetime, not_after: dt.datetime,
          ) -> tuple[Path, Path, int]:
    """A client certificate signed by the CA in `tls` with the validity we ask for."""
    ca_key = serialization.load_pem_private_key((tls / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = tls / "custom"
    out.mkdir(exist_ok=True)
    crt, kp = out / f"{cn}.crt", out / f"{cn}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    os.chmod(kp, 0o600)
    return crt, kp, cert.serial_number


def revoke_in_crl(tls: Path, serial: int) -> None:
    """Add `serial` to ca.crl, re-signed by the CA (what `wattrail pki revoke` does to crl.pem)."""
    ca_key = serialization.load_pem_private_key((tls / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
    old = x509.load_pem_x509_crl((tls / "ca.crl").read_bytes())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
               .last_update(now - dt.timedelta(minutes=1))
               .next_update(now + dt.timedelta(days=30)))
    for r in old:
        builder = builder.add_revoked_certificate(r)
    builder = builder.add_revoked_certificate(
        x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
    crl = builder.sign(ca_key, hashes.SHA256())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    tmp = tls / "ca.crl.new"
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    tmp.replace(tls / "ca.crl")  # atomic: the broker never reads half a CRL


# -- one connection attempt ----------------------------------------------------------------------
def _connect_packet(client_id: str) -> bytes:
    cid = client_id.encode()
    # protocol name, level 5, flags: clean start; keepalive 30 s; no properties; client id
    var = b"\x00\x04MQTT\x05\x02\x00\x1e\x00" + len(cid).to_bytes(2, "big") + cid
    assert len(var) < 128  # one-byte remaining length
    return bytes([0x10, len(var)]) + var


def attempt(b: Broker, cert: Path | None, key: Path | None, ca: Path | None = None) -> str:
    """'connected' (CONNACK 0x00) or how the broker refused: 'tls:<alert>', 'closed',
    'connack:0x..'. Never a timeout: that would not be a refusal, so it fails the test."""
    ctx = ssl.create_default_context(cafile=str(ca or b.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    try:
        with socket.create_connection(("127.0.0.1", b.port), timeout=CONNECT_TIMEOUT_S) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as s:
            # With TLS 1.3 the client's handshake ends before the broker has judged our
            # certificate; its verdict (an alert) comes next. Wait a moment for it before
            # sending CONNECT: a broker that closes on unread data resets the connection and
            # the alert is lost (then the outcome is just 'closed', still a refusal).
            s.settimeout(VERDICT_WAIT_S)
            try:
                early = s.recv(4)
            except TimeoutError:
                early = None  # nothing said: TLS accepted us, now ask MQTT
            if early is not None:
                return "closed" if not early else f"unexpected:{early.hex()}"
            s.settimeout(CONNECT_TIMEOUT_S)
            s.sendall(_connect_packet(f"probe-{uuid.uuid4().hex[:8]}"))
            head = s.recv(4)
            if not head:
                return "closed"
            if head[0] != 0x20 or len(head) < 4:
                return f"unexpected:{head.hex()}"
            return "connected" if head[3] == 0 else f"connack:0x{head[3]:02x}"
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError, BrokenPipeError):
        return "closed"  # the alert was sent, but the socket closed before we read it
    except ssl.SSLError as exc:
        return f"tls:{exc.reason or type(exc).__name__ + ':' + str(exc)}"
    except TimeoutError as exc:
        raise AssertionError("the broker neither accepted nor refused within "
                             f"{CONNECT_TIMEOUT_S} s") from exc


def attempts(b: Broker, cert: Path | None, key: Path | None, ca: Path | None = None,
             ) -> Counter[str]:
    return Counter(attempt(b, cert, key, ca) for _ in range(N))


def refused_all(outcomes: Counter[str]) -> bool:
    return outcomes["connected"] == 0 and sum(outcomes.values()) == N


# -- tests -----------------------------------------------------------------------------------------
def test_valid_certificate_connects_every_time(broker: Broker) -> None:
    good = svc.issue_cert(broker.tls, "agent-tls-valid")
    out = attempts(broker, Path(good["cert"]), Path(good["key"]))
    assert out == Counter({"connected": N}), out


def test_no_certificate_is_always_refused(broker: Broker) -> None:
    out = attempts(broker, None, None)
    assert refused_all(out), out
    assert set(out) <= {"tls:TLSV13_ALERT_CERTIFICATE_REQUIRED", "closed"}, out
    print(f"no certificate: {dict(out)}")


def test_foreign_ca_is_always_refused(broker: Broker, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    svc.ensure_ca(foreign)  # a CA of the same shape and name, just not the broker's
    cred = svc.issue_cert(foreign, "agent-tls-foreign")
    out = attempts(broker, Path(cred["cert"]), Path(cred["key"]))
    assert refused_all(out), out
    assert set(out) <= {"tls:TLSV1_ALERT_UNKNOWN_CA", "closed"} and out["closed"] < N, out
    print(f"foreign CA: {dict(out)}")


@pytest.mark.parametrize("when", ["expired", "not-yet-valid"])
def test_certificate_outside_its_validity_is_always_refused(broker: Broker, when: str) -> None:
    now = dt.datetime.now(dt.UTC)
    if when == "expired":
        window = (now - dt.timedelta(days=30), now - dt.timedelta(days=1))
    else:
        window = (now + dt.timedelta(days=1), now + dt.timedelta(days=30))
    crt, key, _ = issue(broker.tls, f"agent-tls-{when}", not_before=window[0], not_after=window[1])
    out = attempts(broker, crt, key)
    assert refused_all(out), out
    # OpenSSL's alert for a certificate not valid yet is the generic bad_certificate
    alert = "SSLV3_ALERT_CERTIFICATE_EXPIRED" if when == "expired" else "SSLV3_ALERT_BAD_CERTIFICATE"
    assert set(out) <= {f"tls:{alert}", "closed"} and out["closed"] < N, out
    print(f"{when}: {dict(out)}")


def test_revoked_certificate_is_refused_after_crl_update_and_sighup(broker: Broker) -> None:
    now = dt.datetime.now(dt.UTC)
    crt, key, serial = issue(broker.tls, "agent-tls-revoked", not_before=now - dt.timedelta(hours=1),
                             not_after=now + dt.timedelta(days=30))
    other = svc.issue_cert(broker.tls, "agent-tls-bystander")
    assert attempts(broker, crt, key) == Counter({"connected": N})  # fine before the revocation

    revoke_in_crl(broker.tls, serial)
    pid = broker.proc.pid
    broker.reload()
    deadline = time.monotonic() + 10
    while attempt(broker, crt, key) == "connected":  # SIGHUP is handled in the main loop
        assert time.monotonic() < deadline, "still accepted 10 s after the CRL reload"
        time.sleep(0.05)
    out = attempts(broker, crt, key)
    assert refused_all(out), out
    assert set(out) <= {"tls:SSLV3_ALERT_CERTIFICATE_REVOKED", "closed"} and out["closed"] < N, out
    # the same process re-read the CRL (no restart needed on 2.0.11), and only that serial is out
    assert broker.proc.poll() is None and broker.proc.pid == pid
    assert "Reloading config" in broker.log.read_text()
    assert attempts(broker, Path(other["cert"]), Path(other["key"])) == Counter({"connected": N})
    print(f"revoked after SIGHUP: {dict(out)}")


def _client(b: Broker, cn: str) -> MqttTestClient:
    cred = svc.issue_cert(b.tls, cn)
    c = MqttTestClient("127.0.0.1", b.port, b.ca, Path(cred["cert"]), Path(cred["key"]),
                       client_id=f"{cn}-{uuid.uuid4().hex[:6]}")
    assert c.connect(), f"{cn}: {c.connack}"
    return c


def _drain(c: MqttTestClient, quiet_s: float = 0.5) -> list[Any]:
    got = []
    while (m := c.receive(quiet_s)) is not None:
        got.append(m)
    return got


def test_publishing_under_another_agents_topics_delivers_nothing(broker: Broker) -> None:
    tag = uuid.uuid4().hex[:6]
    a, b = f"agent-x{tag}-a", f"agent-x{tag}-b"
    cloud = _client(broker, svc.INGESTOR_CN)
    attacker = _client(broker, a)
    try:
        for kind in ("readings", "events", "status"):
            assert cloud.subscribe(f"wattrail/v1/+/{kind}")[0].value == 1  # QoS 1
        codes: Counter[str] = Counter()
        for i in range(N):
            for kind in ("readings", "events", "status"):
                rc = attacker.publish(topic(b, kind), b"forged-%d" % i)
                assert rc is not None
                codes[f"0x{rc.value:02x} {rc.getName()}"] += 1
            rc = attacker.publish(topic(b, "ack"), b"committed 99")  # only the cloud writes acks
            assert rc is not None
            codes[f"0x{rc.value:02x} {rc.getName()}"] += 1
        assert codes == Counter({"0x87 Not authorized": 4 * N}), codes
        assert _drain(cloud) == []  # 0 delivered
        # control: the same client, under its own id, is delivered
        assert attacker.publish(topic(a, "readings"), b"own").value == 0  # type: ignore[union-attr]
        got = _drain(cloud)
        assert [(m.topic, m.payload) for m in got] == [(topic(a, "readings"), b"own")]
        print(f"cross-agent publish: {4 * N} attempts, PUBACK {dict(codes)}, 0 delivered")
    finally:
        attacker.close()
        cloud.close()


def test_subscribing_to_another_agents_topics_delivers_nothing(broker: Broker) -> None:
    tag = uuid.uuid4().hex[:6]
    a, b = f"agent-s{tag}-a", f"agent-s{tag}-b"
    cloud = _client(broker, svc.INGESTOR_CN)
    victim = _client(broker, b)
    attacker = _client(broker, a)
    try:
        assert victim.subscribe(topic(b, "ack"))[0].value == 1
        granted = {}
        for t in (topic(b, "ack"), topic(b, "readings"), topic(b, "events"), "wattrail/v1/+/ack",
                  "wattrail/v1/#"):
            granted[t] = attacker.subscribe(t)[0]
        cloud.subscribe(topic(b, "readings"))
        for i in range(N):
            assert cloud.publish(topic(b, "ack"), b"%d" % i).value == 0  # type: ignore[union-attr]
            assert victim.publish(topic(b, "readings"), b"r%d" % i).value == 0  # type: ignore[union-attr]
            assert victim.publish(topic(b, "events"), b"e%d" % i).value == 0  # type: ignore[union-attr]
        stolen = _drain(attacker, 1.0)
        assert stolen == [], [(m.topic, m.payload) for m in stolen[:5]]  # 0 of 3N delivered
        # control: the owner got its N acks, the cloud its N readings
        assert len(_drain(victim)) == N
        assert len(_drain(cloud)) == N
        codes = {t: f"0x{rc.value:02x} {rc.getName()}" for t, rc in granted.items()}
        print(f"cross-agent subscribe: SUBACK {codes}; 0 of {3 * N} delivered")
    finally:
        for c in (attacker, victim, cloud):
            c.close()
