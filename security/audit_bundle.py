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
- `consistency`: an earlier head not consistent with the latest one; with a pinned head (the
  auditor's own copy of a head published earlier, `pinned_head`): the latest head is not an
  append-only extension of it (a rolled-back log, or no proof to show it);
- `envelope`: a stored column (sent-at, key id) that disagrees with what the envelope signed;
- `log`: a leaf the log holds for this agent whose envelope is not in the store (deleted, or
  moved to another seq or agent), a leaf whose hash or index is not the stored envelope's, or
  a log the export could not build proofs from;
- `reading`: a stored readings row that differs from the value its envelope signed, names an
  envelope that did not sign it (or one that is not stored), or a signed reading that is not
  stored at all (unless it is older than the oldest readings chunk: retention, noted); the
  same for a `reading_conflicts` row (a signed reading the ingestor kept aside because its
  (meter, time) was already taken): it must be a reading its envelope signed, values and all.
Declared gaps are reported as `gap` notes: they are the platform admitting a loss, not a
forgery, and the auditor should see them. So are signed readings stored once from another
source with the same values, and signed readings kept aside in `reading_conflicts` because
their (meter, time) holds another row: an agent clock that stepped back, an import that came
first, or two readings of one meter at one instant in one envelope (`reading` notes; which of
two such readings sits in `readings` is not evidence, the envelope signed both).

The `log` leaf and `reading` checks of the stored rows are in security/audit_rows.py; the
report and its findings in security/audit_report.py.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocols.envelope import Payload, decode_payload, decode_sign1
from protocols.envelope.errors import EnvelopeError
from security.audit_report import AuditReport, Finding
from security.audit_rows import check_log_leaves, check_readings
from security.chain import ChainState
from security.key_certificate import KeyCertificateError, key_certificate
from security.keyring import Keyring, KeyringError
from security.merkle import leaf_hash, verify_consistency, verify_inclusion
from security.tree_head import SignedTreeHead, TreeHead, verify_tree_head
from security.verify import Status, verify_envelope

FORMAT = "wattrail-audit-bundle"


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _ms(iso: str | None) -> int | None:
    # exact integer arithmetic: a float timestamp * 1000 can land 1 ms short
    if iso is None:
        return None
    return (dt.datetime.fromisoformat(iso) - _EPOCH) // dt.timedelta(milliseconds=1)


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


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(r for r in ranges if r[0] <= r[1]):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _uncovered(lo: int, hi: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of [lo, hi] outside the merged, sorted `covered` ranges."""
    out, at = [], lo
    for a, b in covered:
        if b < at:
            continue
        if a > hi:
            break
        if a > at:
            out.append((at, a - 1))
        at = max(at, b + 1)
    if at <= hi:
        out.append((at, hi))
    return out


_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError,
              binascii.Error)


def verify_bundle(bundle: dict[str, Any], ca: x509.Certificate,
                  log_key: Ed25519PublicKey | None,
                  pinned_head: dict[str, Any] | None = None) -> AuditReport:
    """`pinned_head`: a signed tree head the auditor saved when it was published (the JSON of
    GET /v1/audit/log/tree-head); the bundle's latest head must then extend it.
    A bundle whose structure is broken (a field missing or of the wrong type) is a `format`
    finding, never an exception: whatever the file holds, the auditor gets a report."""
    try:
        return _verify_bundle(bundle, ca, log_key, pinned_head)
    except _MALFORMED as exc:
        rep = AuditReport(agent_id=str(bundle.get("agent_id", ""))[:200]
                          if isinstance(bundle, dict) else "")
        what = f"{type(exc).__name__}: {exc}"
        rep.findings.append(Finding("format", f"the bundle is malformed ({what[:300]})"))
        return rep


def _verify_bundle(bundle: dict[str, Any], ca: x509.Certificate,
                   log_key: Ed25519PublicKey | None,
                   pinned_head: dict[str, Any] | None = None) -> AuditReport:
    rep = AuditReport(agent_id=str(bundle.get("agent_id", "")))
    if bundle.get("format") != FORMAT or bundle.get("version") != 1:
        rep.findings.append(Finding("format", f"not a {FORMAT} v1 bundle"))
        return rep
    ring = _keyring(bundle, ca, rep)
    chain = ChainState()
    pred = bundle.get("predecessor")
    if pred:
        chain.seed(rep.agent_id, int(pred["seq"]), bytes.fromhex(pred["sha256"]))
    # as ranges, never as sets of seqs: a bundle may declare (or skip) 2^62 of them
    declared = _merge([(int(g["from_seq"]), int(g["to_seq"])) for g in bundle.get("chain_gaps", [])])
    for lo, hi in declared:
        span = "" if lo == hi else f" (seqs {lo}..{hi})"
        rep.notes.append(Finding("gap", f"declared missing by the platform{span}", lo))
    head = bundle.get("tree_head")
    sth = _head(head) if head else None
    if sth is not None:
        rep.heads_checked += 1
        if log_key is None or not verify_tree_head(sth, log_key):
            rep.findings.append(Finding("tree_head", f"head of size {sth.head.tree_size}: "
                                        "signature does not verify with the log key"))
    if pinned_head is not None:
        _check_pinned(bundle, _head(pinned_head), sth, log_key, rep)
    for problem in bundle.get("log_problems", []):
        rep.findings.append(Finding("log", f"the export could not use the log: {problem}"))
    prev_seq: int | None = int(pred["seq"]) if pred else None
    seen: set[int] = set()
    signed: dict[int, Payload] = {}
    raws: dict[int, bytes] = {}
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
            missing = _uncovered(prev_seq + 1, seq - 1, declared)
            if missing:
                rep.findings.append(Finding(
                    "chain", f"seqs {missing[0][0]}..{missing[-1][1]} missing and not declared",
                    seq))
        prev_seq = seq if prev_seq is None else max(prev_seq, seq)
        payload = _check_envelope(raw, seq, ring, chain, rep, _ms(e.get("received_at")))
        raws[seq] = raw
        if payload is not None:
            signed[seq] = payload
            _check_columns(e, payload, seq, rep)
        proof = e.get("inclusion_proof")
        if proof is None and sth is not None and e.get("log_index") is not None \
                and int(e["log_index"]) < sth.head.tree_size:
            rep.findings.append(Finding("inclusion", f"logged at index {e['log_index']} under "
                                        "the signed head, but the bundle holds no proof", seq))
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
    if "log_leaves" in bundle:  # older exports lack these two; the CLI says so
        check_log_leaves(bundle, raws, rep)
    if "readings" in bundle:
        check_readings(bundle, signed, set(raws), rep)
    return rep


def _check_pinned(bundle: dict[str, Any], pinned: SignedTreeHead, latest: SignedTreeHead | None,
                  log_key: Ed25519PublicKey | None, rep: AuditReport) -> None:
    """The auditor's own copy of an earlier head: the log must only have grown since."""
    p = pinned.head
    rep.heads_checked += 1
    if log_key is None or not verify_tree_head(pinned, log_key):
        rep.findings.append(Finding("tree_head", f"the pinned head of size {p.tree_size} does "
                                    "not verify with the log key"))
        return
    if latest is None:
        rep.findings.append(Finding("consistency", f"the bundle has no tree head to compare "
                                    f"with the pinned head of size {p.tree_size}"))
        return
    n = latest.head
    if n.tree_size < p.tree_size:
        rep.findings.append(Finding("consistency", f"the log's latest head has {n.tree_size} "
                                    f"leaves, fewer than the pinned head's {p.tree_size}: it was "
                                    "rolled back or its heads deleted"))
        return
    if n.tree_size == p.tree_size:
        if n.root_hash != p.root_hash:
            rep.findings.append(Finding("consistency", f"the latest head has the pinned size "
                                        f"{p.tree_size} but another root"))
        return
    proofs = [k for k in bundle.get("known_heads", []) if int(k["tree_size"]) == p.tree_size]
    if not proofs:
        rep.findings.append(Finding("consistency", f"no consistency proof from the pinned head "
                                    f"(size {p.tree_size}): export with known_tree_size="
                                    f"{p.tree_size}"))
    elif not verify_consistency(p.tree_size, n.tree_size, p.root_hash, n.root_hash,
                                [bytes.fromhex(x) for x in proofs[0]["consistency_to_latest"]]):
        rep.findings.append(Finding("consistency", f"the latest head (size {n.tree_size}) does "
                                    f"not extend the pinned head (size {p.tree_size})"))


def _check_columns(e: dict[str, Any], payload: Payload, seq: int, rep: AuditReport) -> None:
    """The stored columns beside the bytes must say what the bytes say."""
    if "sent_at" in e and _ms(e["sent_at"]) != payload.sent_at_ms:
        rep.findings.append(Finding("envelope", f"stored sent-at {e['sent_at']} is not the "
                                    f"signed one ({payload.sent_at_ms} ms)", seq))
    if "key_id" in e and e["key_id"] != payload.kid.hex():
        rep.findings.append(Finding("envelope", f"stored key id {e['key_id']} is not the signed "
                                    f"{payload.kid.hex()}", seq))


def _check_envelope(raw: bytes, seq: int, ring: Keyring, chain: ChainState,
                    rep: AuditReport, received_at_ms: int | None) -> Payload | None:
    """Verify one envelope; its payload when the signature holds (what it vouches for).
    `received_at_ms` is the platform's receipt time from the bundle: a key revoked before it
    is a finding whatever sent-at the envelope claims."""
    try:  # the listed seq must be the signed one
        payload: Payload | None = decode_payload(decode_sign1(raw).payload)
    except EnvelopeError:
        payload = None
    signed_seq = payload.seq if payload is not None else None
    if signed_seq is not None and signed_seq != seq:
        rep.findings.append(Finding("chain", f"listed as seq {seq} but signed as {signed_seq}",
                                    seq))
    v = verify_envelope(raw, ring, chain, received_at_ms=received_at_ms)
    if v.status in (Status.OK, Status.GAP, Status.REORDERED):
        rep.verified += 1  # a GAP status is judged above against the declared gaps
        return payload if signed_seq == seq else None
    kind = "signature" if v.status in (Status.BAD_SIGNATURE, Status.MALFORMED) else (
        "chain" if v.status in (Status.CONFLICT, Status.REPLAY) else "key")
    rep.findings.append(Finding(kind, f"{v.status.value}: {v.reason}", seq))
    return None
