"""Verify an audit export bundle offline: no database, no network, only the bundle and the
trust anchors the auditor holds (the device CA certificate and the log's public key).

What is checked, and the finding kinds it yields (an empty list means the bundle holds up):
- `certificate`: a key certificate not issued by the CA, or not an envelope-signing key;
- `digest`: an envelope's bytes do not hash to the SHA-256 listed beside them;
- `signature` / `key`: an envelope that fails verification (bad signature, unknown, revoked or
  expired key, malformed), judged by the same `verify_envelope` the ingestor uses;
- `chain`: seq order broken, a prev-hash link that does not match (incl. the predecessor), a
  seq listed twice, or a missing seq the bundle does not declare in `chain_gaps`;
- `tree_head`: a head whose signature does not verify with the log key;
- `inclusion`: an envelope's inclusion proof that does not lead to the signed root;
- `consistency`: an earlier head not consistent with the latest one.
Declared gaps are reported as `gap` notes: they are the platform admitting a loss, not a
forgery, and the auditor should see them.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocols.envelope import decode_payload, decode_sign1
from protocols.envelope_errors import EnvelopeError
from security.chain import ChainState
from security.key_certificate import KeyCertificateError, key_certificate
from security.keyring import Keyring, KeyringError
from security.merkle import leaf_hash, verify_consistency, verify_inclusion
from security.tree_head import SignedTreeHead, TreeHead, verify_tree_head
from security.verify import Status, verify_envelope

FORMAT = "wattrail-audit-bundle"


@dataclass(frozen=True)
class Finding:
    kind: str
    detail: str
    seq: int | None = None


@dataclass
class AuditReport:
    agent_id: str = ""
    envelopes: int = 0
    verified: int = 0
    proofs_checked: int = 0
    heads_checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _ms(iso: str | None) -> int | None:
    return None if iso is None else int(dt.datetime.fromisoformat(iso).timestamp() * 1000)


def _head(h: dict[str, Any]) -> SignedTreeHead:
    return SignedTreeHead(TreeHead(int(h["tree_size"]), int(h["timestamp_ms"]),
                                   bytes.fromhex(h["root_hash"])),
                          bytes.fromhex(h["key_id"]), bytes.fromhex(h["signature"]))


def _keyring(bundle: dict[str, Any], ca: x509.Certificate, rep: AuditReport) -> Keyring:
    ring = Keyring()
    for k in bundle.get("key_certificates", []):
        try:
            cert = x509.load_pem_x509_certificate(str(k["certificate_pem"]).encode())
            kc = key_certificate(cert, ca, _ms(k.get("revoked_at")))
            if kc.agent_id != bundle["agent_id"]:
                raise KeyCertificateError(f"issued to {kc.agent_id!r}", serial=cert.serial_number)
            ring.add(kc)
        except (KeyCertificateError, KeyringError, ValueError, TypeError) as exc:
            rep.findings.append(Finding("certificate", f"key {k.get('key_id')}: {exc}"))
    return ring


def verify_bundle(bundle: dict[str, Any], ca: x509.Certificate,
                  log_key: Ed25519PublicKey | None) -> AuditReport:
    rep = AuditReport(agent_id=str(bundle.get("agent_id", "")))
    if bundle.get("format") != FORMAT or bundle.get("version") != 1:
        rep.findings.append(Finding("format", f"not a {FORMAT} v1 bundle"))
        return rep
    ring = _keyring(bundle, ca, rep)
    chain = ChainState()
    pred = bundle.get("predecessor")
    if pred:
        chain.seed(rep.agent_id, int(pred["seq"]), bytes.fromhex(pred["sha256"]))
    declared = {s for g in bundle.get("chain_gaps", [])
                for s in range(int(g["from_seq"]), int(g["to_seq"]) + 1)}
    for s in sorted(declared):
        rep.notes.append(Finding("gap", "declared missing by the platform", s))
    head = bundle.get("tree_head")
    sth = _head(head) if head else None
    if sth is not None:
        rep.heads_checked += 1
        if log_key is None or not verify_tree_head(sth, log_key):
            rep.findings.append(Finding("tree_head", f"head of size {sth.head.tree_size}: "
                                        "signature does not verify with the log key"))
    prev_seq: int | None = int(pred["seq"]) if pred else None
    seen: set[int] = set()
    for e in bundle.get("envelopes", []):
        seq = int(e["seq"])
        rep.envelopes += 1
        raw = base64.b64decode(e["raw_base64"])
        if hashlib.sha256(raw).hexdigest() != e["sha256"]:
            rep.findings.append(Finding("digest", "bytes differ from the listed SHA-256", seq))
        if seq in seen:
            rep.findings.append(Finding("chain", "seq appears twice", seq))
        seen.add(seq)
        if prev_seq is not None and seq <= prev_seq:
            rep.findings.append(Finding("chain", f"out of order after seq {prev_seq}", seq))
        elif prev_seq is not None and seq > prev_seq + 1:
            missing = set(range(prev_seq + 1, seq)) - declared
            if missing:
                rep.findings.append(Finding(
                    "chain", f"seqs {min(missing)}..{max(missing)} missing and not declared", seq))
        prev_seq = seq if prev_seq is None else max(prev_seq, seq)
        _check_envelope(raw, seq, ring, chain, rep)
        proof = e.get("inclusion_proof")
        if proof is not None and sth is not None:
            rep.proofs_checked += 1
            idx = e.get("log_index")
            if idx is None or not verify_inclusion(int(idx), sth.head.tree_size, leaf_hash(raw),
                                                   [bytes.fromhex(p) for p in proof],
                                                   sth.head.root_hash):
                rep.findings.append(Finding("inclusion", "proof does not reach the signed root",
                                            seq))
    for item in bundle.get("earlier_heads", []):
        old = _head(item["tree_head"])
        rep.heads_checked += 1
        if log_key is None or not verify_tree_head(old, log_key):
            rep.findings.append(Finding("tree_head", f"earlier head of size {old.head.tree_size}:"
                                        " signature does not verify"))
        if sth is None or not verify_consistency(
                old.head.tree_size, sth.head.tree_size, old.head.root_hash, sth.head.root_hash,
                [bytes.fromhex(p) for p in item.get("consistency_to_latest", [])]):
            rep.findings.append(Finding("consistency", f"head of size {old.head.tree_size} is "
                                        "not consistent with the latest head"))
    return rep


def _check_envelope(raw: bytes, seq: int, ring: Keyring, chain: ChainState,
                    rep: AuditReport) -> None:
    try:  # the listed seq must be the signed one
        signed_seq = decode_payload(decode_sign1(raw).payload).seq
    except EnvelopeError:
        signed_seq = None
    if signed_seq is not None and signed_seq != seq:
        rep.findings.append(Finding("chain", f"listed as seq {seq} but signed as {signed_seq}",
                                    seq))
    v = verify_envelope(raw, ring, chain)
    if v.status in (Status.OK, Status.GAP, Status.REORDERED):
        rep.verified += 1  # a GAP status is judged above against the declared gaps
        return
    kind = "signature" if v.status in (Status.BAD_SIGNATURE, Status.MALFORMED) else (
        "chain" if v.status in (Status.CONFLICT, Status.REPLAY) else "key")
    rep.findings.append(Finding(kind, f"{v.status.value}: {v.reason}", seq))
