"""The verifier's checks of what the store says beside the envelopes: the log's leaves for the
agent (a deleted envelope is a leaf without its envelope), the stored readings and the readings
kept aside in reading_conflicts against the signed ones, the stored columns, and the auditor's
pinned tree head."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.envelope import GENESIS_PREV_HASH, ClockStatus, Payload, encode_payload, envelope_hash
from protocols.reading import MEASURED_FIELDS, Quality, Reading
from security.audit_bundle import FORMAT, verify_bundle
from security.keys import key_id, load_private_key, sign_envelope
from security.merkle import consistency_proof, inclusion_proof, leaf_hash, root_hash
from security.pki import init_ca, issue_agent
from security.tree_head import TreeHead, sign_tree_head

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T0 = int(NOW.timestamp() * 1000)
AGENT = "tx-9"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def _head(size: int, leaves: list[bytes], ts: int) -> dict[str, Any]:
    sth = sign_tree_head(LOG_KEY, TreeHead(size, ts, root_hash(leaves[:size])))
    return {"tree_size": size, "timestamp_ms": ts, "root_hash": sth.head.root_hash.hex(),
            "key_id": sth.kid.hex(), "signature": sth.signature.hex()}


def _row(r: Reading, seq: int) -> dict[str, Any]:
    return {"meter_id": r.meter_id, "ts_ms": r.ts_ms,
            **{f: getattr(r, f) for f in MEASURED_FIELDS}, "status": r.status,
            "quality": int(r.quality), "provenance": "signed", "agent_id": AGENT, "seq": seq,
            "import_batch": None}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pki = tmp_path_factory.mktemp("pki")
    init_ca(pki, now=NOW - dt.timedelta(days=1))
    creds = issue_agent(pki, AGENT, now=NOW - dt.timedelta(days=1))
    key = load_private_key(creds.signing_key)
    kid = key_id(key)
    envs, payloads, prev = [], [], GENESIS_PREV_HASH
    for seq in range(1, 7):
        sent = T0 + seq * 60_000
        rs = [Reading(f"M{i}", sent - 500, import_wh=100.0 * seq + i, v_l1=230.5,
                      export_wh=None, quality=Quality.STALE if i else Quality.VALID)
              for i in range(3)]
        if seq == 6:  # a second reading of M1 at the same instant, other values: kept aside
            rs.append(Reading("M1", sent - 500, import_wh=-1.0, v_l1=1.0))
        p = Payload(AGENT, kid, seq, prev, sent, ClockStatus.SYNCED, rs)
        raw = sign_envelope(key, kid, encode_payload(p))
        prev = envelope_hash(raw)
        envs.append(raw)
        payloads.append(p)
    other = [leaf_hash(b"other-%d" % i) for i in range(3)]
    leaves = [other[0], *(leaf_hash(e) for e in envs[:3]), other[1], *(leaf_hash(e) for e in
                                                                      envs[3:5]), other[2]]
    index = {1: 1, 2: 2, 3: 3, 4: 5, 5: 6}  # seq 6 is stored but not logged yet
    pinned = _head(5, leaves, T0 + 10**6)
    bundle = {
        "format": FORMAT, "version": 1, "agent_id": AGENT, "predecessor": None,
        "chain_gaps": [], "earlier_heads": [], "log_problems": [],
        "tree_head": _head(len(leaves), leaves, T0 + 10**7),
        "known_heads": [{"tree_size": 5, "consistency_to_latest":
                         [x.hex() for x in consistency_proof(5, leaves)]}],
        "envelopes": [{
            "seq": s, "sha256": hashlib.sha256(e).hexdigest(), "key_id": kid.hex(),
            "sent_at": dt.datetime.fromtimestamp((T0 + s * 60_000) / 1000, dt.UTC).isoformat(),
            "log_index": index.get(s), "raw_base64": base64.b64encode(e).decode(),
            "inclusion_proof": None if s not in index else
            [x.hex() for x in inclusion_proof(index[s], leaves)]} for s, e in enumerate(envs, 1)],
        "key_certificates": [{"key_id": kid.hex(), "revoked_at": None,
                              "certificate_pem": Path(creds.signing_cert).read_text()}],
        "log_window": {"from_seq": 1, "to_seq": None},
        "log_leaves": [{"seq": s, "idx": i, "leaf_hash": leaves[i].hex()} for s, i in index.items()],
        "readings": [_row(r, p.seq) for p in payloads for r in p.readings[:3]],
        "reading_conflicts": [{k: v for k, v in _row(payloads[5].readings[3], 6).items()
                               if k not in ("provenance", "import_batch")}],
        "readings_held_from_ms": T0 - 86_400_000,
    }
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    return {"bundle": bundle, "ca": ca, "pinned": pinned, "leaves": leaves}


def _verify(w: dict[str, Any], b: dict[str, Any], pinned: dict[str, Any] | None = None) -> Any:
    return verify_bundle(b, w["ca"], LOG_KEY.public_key(), pinned or w["pinned"])


def test_an_honest_bundle_with_store_sections_verifies(world: dict[str, Any]) -> None:
    rep = _verify(world, world["bundle"])
    assert rep.findings == []
    # the second reading of M1 in seq 6 is evidence kept aside, not tampering: a note
    assert [(n.kind, n.seq) for n in rep.notes] == [("reading", 6)]
    assert "kept in reading_conflicts" in rep.notes[0].detail
    assert (rep.envelopes, rep.verified, rep.proofs_checked, rep.heads_checked) == (6, 6, 5, 2)


def test_a_reading_kept_aside_is_missing_from_an_export_without_the_section(
    world: dict[str, Any],
) -> None:
    b = copy.deepcopy(world["bundle"])
    del b["reading_conflicts"]  # an export from before the section existed
    assert {(f.kind, f.seq) for f in _verify(world, b).findings} == {("reading", 6)}


def _drop_env(b: dict[str, Any], seq: int) -> None:
    b["envelopes"] = [e for e in b["envelopes"] if e["seq"] != seq]
    b["chain_gaps"] = [{"from_seq": seq, "to_seq": seq}]  # the export declares what it sees


def _reading(b: dict[str, Any], of_seq: int, i: int) -> dict[str, Any]:
    return next(r for r in b["readings"] if r["seq"] == of_seq and r["meter_id"] == f"M{i}")


def _set(b: dict[str, Any], of_seq: int, i: int, **kw: Any) -> None:
    _reading(b, of_seq, i).update(kw)


def _rm_reading(b: dict[str, Any], seq: int, i: int) -> None:
    b["readings"].remove(_reading(b, seq, i))


TAMPERS: dict[str, tuple[Callable[[dict[str, Any]], Any], str, int | None]] = {
    "deleted logged envelope": (lambda b: _drop_env(b, 2), "log", 2),
    "deleted unlogged envelope (its readings remain)": (lambda b: _drop_env(b, 6), "reading", 6),
    "reading value changed": (lambda b: _set(b, 3, 1, import_wh=1.5), "reading", 3),
    "reading quality changed": (lambda b: _set(b, 3, 2, quality=0), "reading", 3),
    "reading null filled": (lambda b: _set(b, 4, 0, export_wh=0.0), "reading", 4),
    "reading deleted": (lambda b: _rm_reading(b, 5, 0), "reading", 5),
    "reading forged under an envelope": (
        lambda b: b["readings"].append({**_reading(b, 2, 0), "meter_id": "M77"}), "reading", 2),
    "reading naming an unstored seq": (
        lambda b: b["readings"].append({**_reading(b, 2, 0), "ts_ms": 5, "seq": 44}),
        "reading", 44),
    "reading re-attributed": (lambda b: _set(b, 1, 1, seq=4), "reading", 4),
    "kept-aside reading value changed": (
        lambda b: b["reading_conflicts"][0].update(import_wh=-2.0), "reading", 6),
    "kept-aside reading deleted": (lambda b: b["reading_conflicts"].clear(), "reading", 6),
    "kept-aside reading naming an unstored seq": (
        lambda b: b["reading_conflicts"].append({**b["reading_conflicts"][0], "seq": 44}),
        "reading", 44),
    "kept-aside reading forged under an envelope": (
        lambda b: b["reading_conflicts"].append({**b["reading_conflicts"][0], "meter_id": "M8"}),
        "reading", 6),
    "reading changed, a forged kept-aside row holds the signed values": (
        lambda b: (b["reading_conflicts"].append(
            {k: v for k, v in _reading(b, 3, 1).items() if k not in ("provenance", "import_batch")}),
            _set(b, 3, 1, import_wh=1.5)), "reading", 3),
    "reading relabelled imported with other values": (
        lambda b: _set(b, 1, 2, provenance="imported", agent_id=None, seq=None, import_batch=3,
                       v_l1=1.0), "reading", 1),
    "stored sent_at differs": (lambda b: b["envelopes"][2].update(
        sent_at=(NOW + dt.timedelta(hours=5)).isoformat()), "envelope", 3),
    "stored key id differs": (lambda b: b["envelopes"][1].update(key_id="00" * 16),
                              "envelope", 2),
    "leaf hash differs": (lambda b: b["log_leaves"][0].update(leaf_hash="11" * 32), "log", 1),
    "log index differs": (lambda b: b["envelopes"][0].update(log_index=7), "log", 1),
    "logged but no leaf": (lambda b: b["log_leaves"].pop(1), "log", 2),
    "logged but no proof": (lambda b: b["envelopes"][3].update(inclusion_proof=None),
                            "inclusion", 4),
    "export saw a damaged log": (lambda b: b["log_problems"].append("7 leaves below size 8"),
                                 "log", None),
    "no proof from the pinned head": (lambda b: b.update(known_heads=[]), "consistency", None),
    "bad proof from the pinned head": (
        lambda b: b["known_heads"][0].update(consistency_to_latest=["22" * 32]),
        "consistency", None),
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_store_tampering_is_caught(world: dict[str, Any], name: str) -> None:
    tamper, kind, seq = TAMPERS[name]
    b = copy.deepcopy(world["bundle"])
    tamper(b)
    rep = _verify(world, b)
    assert not rep.ok, f"{name} went unnoticed"
    assert any(f.kind == kind and (seq is None or f.seq == seq) for f in rep.findings), \
        (name, rep.findings)


def test_a_rolled_back_log_fails_against_the_pinned_head(world: dict[str, Any]) -> None:
    b = copy.deepcopy(world["bundle"])
    b["tree_head"] = _head(4, world["leaves"], T0 + 10**5)  # older than the auditor's copy
    for e in b["envelopes"]:
        e["inclusion_proof"] = None
    rep = _verify(world, b)
    assert [f.kind for f in rep.findings if f.kind == "consistency"] == ["consistency"]
    assert "rolled back" in next(f.detail for f in rep.findings if f.kind == "consistency")
    same_size_other_root = copy.deepcopy(world["bundle"])
    forged_pin = _head(5, [leaf_hash(b"x")] * 5, T0)  # signed, but not this log's history
    rep = _verify(world, same_size_other_root, forged_pin)
    assert any(f.kind == "consistency" for f in rep.findings)


def test_a_pinned_head_must_verify_with_the_log_key(world: dict[str, Any]) -> None:
    forged = {**world["pinned"], "signature": "00" * 64}
    rep = _verify(world, copy.deepcopy(world["bundle"]), forged)
    assert any(f.kind == "tree_head" and "pinned" in f.detail for f in rep.findings)


def test_a_reading_stored_once_from_elsewhere_with_the_signed_values_is_a_note(
    world: dict[str, Any],
) -> None:
    b = copy.deepcopy(world["bundle"])
    _set(b, 2, 1, provenance="imported", agent_id=None, seq=None, import_batch=9)
    rep = _verify(world, b)
    assert rep.ok, rep.findings
    assert [(n.kind, n.seq) for n in rep.notes] == [("reading", 2), ("reading", 6)]
    assert "import batch 9" in rep.notes[0].detail


def test_readings_older_than_the_oldest_chunk_are_retention_notes(world: dict[str, Any]) -> None:
    b = copy.deepcopy(world["bundle"])
    b["readings"] = [r for r in b["readings"] if r["seq"] != 1]
    b["readings_held_from_ms"] = T0 + 90_000  # seq 1's readings (T0 + 59.5 s) were dropped
    rep = _verify(world, b)
    assert rep.ok, rep.findings
    retention = [n for n in rep.notes if n.seq == 1]
    assert len(retention) == 3 and all("retention" in n.detail for n in retention)
    b["readings_held_from_ms"] = None  # no chunk at all: nothing can excuse a missing reading
    assert {(f.kind, f.seq) for f in _verify(world, b).findings} == {("reading", 1)}


def test_cli_pins_the_tree_head(world: dict[str, Any], tmp_path: Path) -> None:
    import json

    import typer
    from click.testing import CliRunner
    from cryptography.hazmat.primitives import serialization

    from wattrail.cli import app

    cli = typer.main.get_command(app)
    (tmp_path / "bundle.json").write_text(json.dumps(world["bundle"]))
    (tmp_path / "ca.crt").write_bytes(world["ca"].public_bytes(serialization.Encoding.PEM))
    (tmp_path / "log.pub").write_bytes(LOG_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "head.json").write_text(json.dumps(world["pinned"]))
    (tmp_path / "bad.json").write_text(json.dumps({**world["pinned"], "root_hash": "33" * 32}))
    (tmp_path / "junk.json").write_text("{")
    base = ["audit", "verify", str(tmp_path / "bundle.json"), "--ca", str(tmp_path / "ca.crt"),
            "--log-key", str(tmp_path / "log.pub")]
    ok = CliRunner().invoke(cli, [*base, "--tree-head", str(tmp_path / "head.json")])
    assert ok.exit_code == 0, ok.output
    assert "pinned tree head: size 5" in ok.output and "OK" in ok.output
    unpinned = CliRunner().invoke(cli, base)
    assert unpinned.exit_code == 0 and "no --tree-head" in unpinned.output
    bad = CliRunner().invoke(cli, [*base, "--tree-head", str(tmp_path / "bad.json")])
    assert bad.exit_code == 1 and "tree_head" in bad.output, bad.output
    junk = CliRunner().invoke(cli, [*base, "--tree-head", str(tmp_path / "junk.json")])
    assert junk.exit_code == 2 and "cannot read the tree head" in junk.output
