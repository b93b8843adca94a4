"""The device CA: issue agents, rotate, revoke, and the keyring it vouches for."""

from __future__ import annotations

import datetime as dt
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocols.envelope import GENESIS_PREV_HASH, ClockStatus, Payload, encode_payload
from protocols.topics import InvalidAgentId, check_agent_id
from security.chain import ChainState
from security.key_certificate import KeyCertificateError, der_uint, key_certificate, load_keyring
from security.keys import key_id, load_private_key, sign_envelope
from security.pki import PkiError, init_ca, issue_agent, revoke
from security.verify import Status, verify_envelope

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)


@pytest.fixture
def ca_dir(tmp_path):
    init_ca(tmp_path / "ca", now=NOW)
    return tmp_path / "ca"


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_issue_agent_writes_tls_and_signing_credentials(ca_dir):
    creds = issue_agent(ca_dir, "agent-7", now=NOW)
    assert _mode(ca_dir / "ca.key") == _mode(creds.tls_key) == _mode(creds.signing_key) == 0o600
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    tls = x509.load_pem_x509_certificate(creds.tls_cert.read_bytes())
    tls.verify_directly_issued_by(ca)
    assert tls.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "agent-7"
    eku = tls.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    sig = x509.load_pem_x509_certificate(creds.signing_cert.read_bytes())
    assert isinstance(sig.public_key(), Ed25519PublicKey)
    assert ExtendedKeyUsageOID.CLIENT_AUTH not in sig.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value  # the signing key is no TLS identity
    kc = creds.key_cert
    assert kc.agent_id == "agent-7" and kc.kid == key_id(load_private_key(creds.signing_key))
    assert kc.from_seq == 1 and kc.valid_from_ms < NOW_MS < kc.valid_to_ms


def test_envelopes_from_an_issued_key_verify_through_the_ca_keyring(ca_dir):
    creds = issue_agent(ca_dir, "agent-7", now=NOW)
    key = load_private_key(creds.signing_key)
    payload = Payload("agent-7", key_id(key), 1, GENESIS_PREV_HASH, NOW_MS + 1000, ClockStatus.SYNCED, [])
    data = sign_envelope(key, key_id(key), encode_payload(payload))
    assert verify_envelope(data, load_keyring(ca_dir), ChainState()).status is Status.OK
    revoke(ca_dir, "agent-7", now=NOW)  # revoked before it was sent (NOW < NOW + 1 s)
    assert verify_envelope(data, load_keyring(ca_dir), ChainState()).status is Status.REVOKED_KEY


def test_rotation_through_reissue(ca_dir):
    first = issue_agent(ca_dir, "agent-7", now=NOW)
    second = issue_agent(ca_dir, "agent-7", from_seq=100, now=NOW)
    keyring = load_keyring(ca_dir)
    assert [c.kid for c in keyring.for_agent("agent-7")] == [first.key_cert.kid, second.key_cert.kid]
    assert keyring.successor(first.key_cert) == second.key_cert


def test_revoke_by_serial_and_by_agent(ca_dir):
    a = issue_agent(ca_dir, "agent-a", now=NOW)
    issue_agent(ca_dir, "agent-b", now=NOW)
    tls_serial = x509.load_pem_x509_certificate(a.tls_cert.read_bytes()).serial_number
    crl = revoke(ca_dir, tls_serial, now=NOW)
    assert [r.serial_number for r in crl] == [tls_serial]
    crl = revoke(ca_dir, "agent-b", now=NOW + dt.timedelta(hours=1))
    assert len(list(crl)) == 3  # agent-a's TLS cert + both of agent-b's
    on_disk = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
    assert {r.serial_number for r in on_disk} == {r.serial_number for r in crl}
    keyring = load_keyring(ca_dir)
    assert keyring.get("agent-a", a.key_cert.kid).revoked_at_ms is None  # only its TLS cert went
    (b_cert,) = keyring.for_agent("agent-b")
    assert b_cert.revoked_at_ms == NOW_MS + 3_600_000
    with pytest.raises(PkiError):
        revoke(ca_dir, "agent-nobody")


@pytest.mark.parametrize(
    "agent_id",
    ["", "a/b", "a+b", "a#", "#", "+", "$SYS", "a b", "tab\there", "nul\x00", "x" * 65,
     "wattrail-ingestor", "wattrail-anything", "Wattrail-Ingestor", "Ünïcode", "-lead"],
)
def test_refuses_agent_ids_that_are_not_safe_topic_levels(ca_dir, agent_id):
    with pytest.raises(InvalidAgentId):
        issue_agent(ca_dir, agent_id, now=NOW)
    assert not (ca_dir / "agents").exists() or not any((ca_dir / "agents").iterdir())


@pytest.mark.parametrize("agent_id", ["agent-1", "feeder7.tx-12_m", "wattrail", "X9", "x" * 64])
def test_accepts_ordinary_agent_ids(agent_id):
    assert check_agent_id(agent_id) == agent_id


def test_init_ca_refuses_to_overwrite_and_issue_needs_a_ca(ca_dir, tmp_path):
    with pytest.raises(PkiError, match="already exists"):
        init_ca(ca_dir)
    with pytest.raises(PkiError, match="init_ca"):
        issue_agent(tmp_path / "empty", "agent-1")


def test_key_certificate_from_another_ca_is_refused(ca_dir, tmp_path):
    other = init_ca(tmp_path / "other", now=NOW)
    creds = issue_agent(ca_dir, "agent-1", now=NOW)
    cert = x509.load_pem_x509_certificate(creds.signing_cert.read_bytes())
    with pytest.raises(KeyCertificateError, match="not issued by this CA"):
        key_certificate(cert, other)
    tls = x509.load_pem_x509_certificate(creds.tls_cert.read_bytes())
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    with pytest.raises(KeyCertificateError, match="Ed25519"):
        key_certificate(tls, ca)


@pytest.mark.parametrize(("n", "hex_"), [(0, "020100"), (1, "020101"), (127, "02017f"), (128, "02020080"),
                                          (256, "02020100"), (2**63 - 1, "02087fffffffffffffff")])
def test_der_uint(n, hex_):
    assert der_uint(n).hex() == hex_
