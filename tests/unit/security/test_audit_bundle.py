"""The offline verifier catches every way of tampering with an audit bundle."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.envelope import GENESIS_PREV_HASH, ClockStatus, Payload, encode_payload, envelope_hash
from protocols.reading import Reading
from security.audit_bundle import FORMAT, verify_bundle
from security.keys import key_id, load_private_key, sign_envelope
from security.merkle import consistency_proof, inclusion_proof, leaf_hash, root_hash
from security.pki import init_ca, issue_agent
from security.tree_head import TreeHead, sign_tree_head

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T0 = int(NOW.timestamp() * 1000)


def _head_json(key: Ed25519PrivateKey, size: int, leaves: list[bytes], ts: int) -> dict[str, Any]:
    sth = sign_tree_head(key, TreeHead(size, ts, root_hash(leaves[:size])))
    return {"tree_size": size, "timestamp_ms": ts, "root_hash": sth.head.root_hash.hex(),
            "key_id": sth.kid.hex(), "signature": sth.signature.hex()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pki = tmp_path_factory.mktemp("pki")
    init_ca(pki, now=NOW - dt.timedelta(days=1))
    creds = issue_agent(pki, "tx-1", now=NOW - dt.timedelta(days=1))
    key = load_private_key(creds.signing_key)
    kid = key_id(key)
    log_key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    envs, prev = [], GENESIS_PREV_HASH
    for seq in range(1, 9):
        p = Payload("tx-1", kid, seq, prev, T0 + seq * 900_000, ClockStatus.SYNCED,
                    [Reading("M1", T0 + seq * 900_000, import_wh=1000.0 + seq)])
        raw = sign_envelope(key, kid, encode_payload(p))
        prev = envelope_hash(raw)
        envs.append(raw)
    other = [leaf_hash(b"other-agent-%d" % i) for i in range(5)]
    leaves = other[:2] + [leaf_hash(e) for e in envs] + other[2:]  # interleaved with others
    index = {seq: 2 + seq - 1 for seq in range(1, 9)}
    size = len(leaves)
    bundle = {
        "format": FORMAT, "version": 1, "agent_id": "tx-1",
        "predecessor": None, "chain_gaps": [],
        "tree_head": _head_json(log_key, size, leaves, T0 + 10**7),
        "earlier_heads": [{"tree_head": _head_json(log_key, 6, leaves, T0 + 10**6),
                           "consistency_to_latest": [p.hex() for p in
                                                     consistency_proof(6, leaves)]}],
        "envelopes": [{"seq": s, "sha256": hashlib.sha256(e).hexdigest(), "log_index": index[s],
                       "raw_base64": base64.b64encode(e).decode(),
                       "inclusion_proof": [p.hex() for p in inclusion_proof(index[s], leaves)]}
                      for s, e in enumerate(envs, 1)],
        "key_certificates": [{"key_id": kid.hex(),
                              "certificate_pem": Path(creds.signing_cert).read_text(),
                              "revoked_at": None}],
    }
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    return {"bundle": bundle, "ca": ca, "log": log_key.public_key(), "pki": pki}


def test_an_honest_bundle_verifies(world: dict[str, Any]) -> None:
    rep = verify_bundle(world["bundle"], world["ca"], world["log"])
    assert rep.findings == []
    assert (rep.envelopes, rep.verified, rep.proofs_checked, rep.heads_checked) == (8, 8, 8, 2)


def _flip_envelope(b: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(b["envelopes"][3]["raw_base64"]))
    raw[len(raw) // 2] ^= 0x04
    b["envelopes"][3]["raw_base64"] = base64.b64encode(bytes(raw)).decode()


def _flip_and_rehash(b: dict[str, Any]) -> None:
    _flip_envelope(b)
    raw = base64.b64decode(b["envelopes"][3]["raw_base64"])
    b["envelopes"][3]["sha256"] = hashlib.sha256(raw).hexdigest()


def _swap_head(b: dict[str, Any]) -> None:
    forger = Ed25519PrivateKey.generate()
    h = b["tree_head"]
    sth = sign_tree_head(forger, TreeHead(h["tree_size"], h["timestamp_ms"],
                                          bytes.fromhex(h["root_hash"])))
    h["signature"], h["key_id"] = sth.signature.hex(), sth.kid.hex()


def _forge_proof(b: dict[str, Any]) -> None:
    proof = b["envelopes"][5]["inclusion_proof"]
    proof[0] = hashlib.sha256(b"forged").hexdigest()


def _alter_root(b: dict[str, Any]) -> None:
    b["earlier_heads"][0]["tree_head"]["root_hash"] = "00" * 32


TAMPERS = {
    "flip-envelope-byte": (_flip_envelope, {"digest", "signature"}),
    "flip-and-rehash": (_flip_and_rehash, {"signature"}),
    "drop-envelope": (lambda b: b["envelopes"].pop(4), {"chain"}),
    "reorder": (lambda b: b["envelopes"].insert(2, b["envelopes"].pop(5)), {"chain"}),
    "duplicate": (lambda b: b["envelopes"].insert(3, copy.deepcopy(b["envelopes"][3])),
                  {"chain"}),
    "swap-tree-head": (_swap_head, {"tree_head"}),
    "forge-proof": (_forge_proof, {"inclusion"}),
    "alter-earlier-head": (_alter_root, {"tree_head", "consistency"}),
    "wrong-seq-label": (lambda b: b["envelopes"][2].update(seq=33), {"chain"}),
    "certificate-from-elsewhere": (
        lambda b: b["key_certificates"][0].update(certificate_pem=_foreign_cert()), {"certificate"}),
}


def _foreign_cert() -> str:
    import tempfile

    d = Path(tempfile.mkdtemp())
    init_ca(d, now=NOW - dt.timedelta(days=1))
    return Path(issue_agent(d, "tx-1", now=NOW - dt.timedelta(days=1)).signing_cert).read_text()


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_every_tampering_is_caught(world: dict[str, Any], name: str) -> None:
    tamper, expected = TAMPERS[name]
    b = copy.deepcopy(world["bundle"])
    tamper(b)
    rep = verify_bundle(b, world["ca"], world["log"])
    kinds = {f.kind for f in rep.findings}
    assert not rep.ok, f"{name} went unnoticed"
    assert kinds & expected, f"{name}: expected one of {expected}, got {rep.findings}"


def test_a_declared_gap_is_a_note_not_a_finding(world: dict[str, Any]) -> None:
    b = copy.deepcopy(world["bundle"])
    b["envelopes"].pop(4)
    b["chain_gaps"] = [{"from_seq": 5, "to_seq": 5}]
    rep = verify_bundle(b, world["ca"], world["log"])
    assert rep.ok, rep.findings
    assert [(n.kind, n.seq) for n in rep.notes] == [("gap", 5)]


def test_a_key_revoked_before_receipt_is_a_finding_whatever_sent_at_claims(
        world: dict[str, Any]) -> None:
    b = copy.deepcopy(world["bundle"])
    iso = lambda ms: dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()  # noqa: E731
    revoked = T0 + 6 * 900_000 + 5000  # after seq 6 was received: sent-at alone condemns 7, 8
    b["key_certificates"][0]["revoked_at"] = iso(revoked)
    for e in b["envelopes"]:  # received promptly, except seq 3: it arrived after the revocation
        e["received_at"] = iso(T0 + e["seq"] * 900_000 + 2000)
    b["envelopes"][2]["received_at"] = iso(revoked + 60_000)
    rep = verify_bundle(b, world["ca"], world["log"])
    assert [(f.kind, f.seq) for f in rep.findings] == [("key", 3), ("key", 7), ("key", 8)]
    assert "received at" in rep.findings[0].detail
    del b["envelopes"][2]["received_at"]  # an older bundle without receipts: sent-at only
    rep = verify_bundle(b, world["ca"], world["log"])
    assert [(f.kind, f.seq) for f in rep.findings] == [("key", 7), ("key", 8)]


def test_without_the_log_key_heads_are_not_trusted(world: dict[str, Any]) -> None:
    rep = verify_bundle(world["bundle"], world["ca"], None)
    assert {f.kind for f in rep.findings} == {"tree_head"}


def test_cli_exit_status_and_report(world: dict[str, Any], tmp_path: Path) -> None:
    import json

    from cryptography.hazmat.primitives import serialization
    from typer.testing import CliRunner

    from wattrail.cli import app

    ca = tmp_path / "ca.crt"
    ca.write_bytes((world["pki"] / "ca.crt").read_bytes())
    pub = tmp_path / "log.pub"
    pub.write_bytes(world["log"].public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(world["bundle"]))
    res = CliRunner().invoke(app, ["audit", "verify", str(good), "--ca", str(ca),
                                   "--log-key", str(pub)])
    assert res.exit_code == 0, res.output
    assert "OK" in res.output
    bad_bundle = copy.deepcopy(world["bundle"])
    _forge_proof(bad_bundle)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(bad_bundle))
    res = CliRunner().invoke(app, ["audit", "verify", str(bad), "--ca", str(ca),
                                   "--log-key", str(pub)])
    assert res.exit_code == 1
    assert "inclusion" in res.output
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    assert CliRunner().invoke(app, ["audit", "verify", str(junk), "--ca", str(ca)]).exit_code == 2


def test_a_zip_bomb_is_refused_without_unpacking_it(world: dict[str, Any], tmp_path: Path) -> None:
    import zipfile

    from typer.testing import CliRunner

    from wattrail.cli import app
    from wattrail.commands import audit as audit_cmd

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bundle.json", b" " * (audit_cmd.MAX_BUNDLE_BYTES + 1))
    assert bomb.stat().st_size < 2 * 1024 * 1024  # a megabyte or so that unpacks past the limit
    ca = tmp_path / "ca.crt"
    ca.write_bytes((world["pki"] / "ca.crt").read_bytes())
    res = CliRunner().invoke(app, ["audit", "verify", str(bomb), "--ca", str(ca)])
    assert res.exit_code != 0 and "unpacks to more than" in res.output, res.output


_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
                  st.text(max_size=20), st.binary(max_size=8).map(bytes.hex),
                  st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4),
                                                                      st.integers(), max_size=2))


def _paths(b: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(b, dict):
        for k, v in b.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(b, list):
        for i, v in enumerate(b[:3]):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damaged_bundle_gets_a_report_never_an_exception(world: dict[str, Any],
                                                            data: st.DataObject) -> None:
    """Replace any value anywhere in a valid bundle with anything JSON can hold: the verifier
    answers with a report (findings where the damage matters), it never raises or runs out
    of memory: a declared gap of 2^62 seqs once built a set of them."""
    b = copy.deepcopy(world["bundle"])
    paths = [p for p in _paths(b) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = b
        try:
            for k in path[:-1]:
                parent = parent[k]
            old = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced the container
        new = data.draw(_JUNK)
        if new == old:
            continue
        parent[path[-1]] = new
    rep = verify_bundle(b, world["ca"], world["log"])
    assert isinstance(rep.findings, list)
