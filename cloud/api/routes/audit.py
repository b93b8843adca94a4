"""The audit trail (auditor, admin): for a reading or an envelope, the evidence and a fresh
verification; per agent, the state of its hash chain; the quarantine.

Hashes and key ids are hex; envelope and quarantined bytes are base64 (standard alphabet).
`agent_id` on quarantined rows is what the message claimed: untrusted by definition.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from cryptography import x509
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from cloud.api.deps import AuditorToken, ConnDep, SettingsDep
from cloud.api.evidence import reverify, signature_ok
from cloud.api.listing import keyset_page, one, rows
from cloud.api.params import FormatParam, PageDep, Time, utc
from cloud.api.problems import ProblemError, responses
from cloud.api.tabular import CSV_RESPONSE, Page, page_or_csv
from cloud.store import envelopes_sql, quarantine_sql, readings_sql
from protocols.envelope import ClockStatus
from security.key_certificate import KeyCertificateError, key_certificate

router = APIRouter(prefix="/v1/audit", tags=["audit"])

AgentId = Annotated[str, Path(min_length=1, max_length=200)]
Seq = Annotated[int, Path(ge=1, le=2**63 - 1)]
_ERR = responses(401, 403, 404, 422, 429)


class EnvelopePublic(BaseModel):
    agent_id: str
    seq: int
    sha256: str = Field(description="hex SHA-256 of the raw bytes (the next envelope's prev hash)")
    key_id: str
    sent_at: datetime
    received_at: datetime
    stored_verdict: str = Field(description="what the ingestor recorded: ok / gap")
    log_index: int | None = Field(description="leaf index in the transparency log; null until logged")
    size_bytes: int
    raw_base64: str = Field(description="the COSE_Sign1 bytes exactly as received")


class VerificationPublic(BaseModel):
    status: str = Field(description="security.verify status: ok, gap, bad_signature, ...")
    reason: str
    signature_valid: bool = Field(description="decoded, key known and valid then, signature checks")
    stored_hash_matches: bool = Field(description="SHA-256 of the stored bytes equals the stored hash")
    chained_to_predecessor: bool = Field(
        description="the previous seq is stored and this envelope's prev hash names it (or seq 1)")
    signer_matches_agent: bool = Field(description="the payload's agent id and seq are the row's")


class CertificateSummary(BaseModel):
    serial_hex: str
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    ca_verified: bool | None = Field(
        description="checked against the configured CA certificate; null when none is configured")
    ca_error: str | None = None


class KeyPublic(BaseModel):
    agent_id: str
    key_id: str
    public_key_hex: str = Field(description="raw Ed25519 public key")
    valid_from: datetime
    valid_to: datetime | None
    from_seq: int
    revoked_at: datetime | None
    revocation_reason: str | None
    certificate_pem: str | None
    certificate: CertificateSummary | None


class EnvelopeAudit(BaseModel):
    envelope: EnvelopePublic
    verification: VerificationPublic
    key: KeyPublic | None = Field(description="the registered key named by the envelope's key id")
    readings: int = Field(description="readings rows stored from this envelope")


class ReadingAudit(BaseModel):
    meter_id: str
    ts: datetime
    provenance: str = Field(description="signed: evidence below; imported: no signature exists")
    import_batch: int | None
    evidence: EnvelopeAudit | None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _summary(pem: str | None, ca_pem: bytes | None) -> CertificateSummary | None:
    if not pem:
        return None
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return None
    verified, error = None, None
    if ca_pem is not None:
        try:
            key_certificate(cert, x509.load_pem_x509_certificate(ca_pem))
            verified = True
        except (KeyCertificateError, ValueError) as exc:
            verified, error = False, str(exc)
    return CertificateSummary(serial_hex=f"{cert.serial_number:x}", subject=cert.subject.rfc4514_string(),
                              issuer=cert.issuer.rfc4514_string(), not_before=cert.not_valid_before_utc,
                              not_after=cert.not_valid_after_utc, ca_verified=verified, ca_error=error)


def read_ca(settings: SettingsDep) -> bytes | None:
    if settings.ca_cert is None:
        return None
    try:
        return settings.ca_cert.read_bytes()
    except OSError as exc:
        raise ProblemError(503, f"the configured CA certificate cannot be read ({exc.strerror})",
                           kind="misconfigured") from exc


def key_public(r: dict[str, Any], ca_pem: bytes | None) -> KeyPublic:
    return KeyPublic(agent_id=r["agent_id"], key_id=bytes(r["key_id"]).hex(),
                     public_key_hex=bytes(r["public_key"]).hex(), valid_from=r["valid_from"],
                     valid_to=r["valid_to"], from_seq=r["from_seq"], revoked_at=r["revoked_at"],
                     revocation_reason=r["revocation_reason"], certificate_pem=r["certificate_pem"],
                     certificate=_summary(r["certificate_pem"], ca_pem))


async def envelope_audit(conn: ConnDep, agent_id: str, seq: int, ca_pem: bytes | None) -> EnvelopeAudit:
    env = await one(conn, envelopes_sql.AUDIT_AT, [agent_id, seq])
    if env is None:
        raise ProblemError(404, f"no stored envelope {seq} of agent {agent_id!r}", kind="not-found")
    raw, sha = bytes(env["raw"]), bytes(env["sha256"])
    received_ms = (env["received_at"] - _EPOCH) // timedelta(milliseconds=1)
    check = await reverify(conn, agent_id, seq, raw, sha, received_at_ms=received_ms)
    v = check.verdict
    key = await one(conn, "SELECT * FROM agent_keys WHERE agent_id = %s AND key_id = %s",
                    [agent_id, env["key_id"]])
    n = await one(conn, readings_sql.COUNT_OF_ENVELOPE, [agent_id, seq])
    return EnvelopeAudit(
        envelope=EnvelopePublic(agent_id=agent_id, seq=seq, sha256=sha.hex(),
                                key_id=bytes(env["key_id"]).hex(), sent_at=env["sent_at"],
                                received_at=env["received_at"],
                                stored_verdict=env["verdict"], log_index=env["log_index"],
                                size_bytes=len(raw), raw_base64=base64.b64encode(raw).decode()),
        verification=VerificationPublic(
            status=v.status.value, reason=v.reason, signature_valid=signature_ok(v),
            stored_hash_matches=check.stored_hash_ok,
            chained_to_predecessor=v.status.value == "ok" and check.predecessor_stored,
            signer_matches_agent=v.agent_id == agent_id and v.seq == seq),
        key=None if key is None else key_public(key, ca_pem),
        readings=int(n["n"]) if n else 0)


@router.get("/envelopes/{agent_id}/{seq}", response_model=EnvelopeAudit, responses=_ERR)
async def get_envelope(agent_id: AgentId, seq: Seq, conn: ConnDep, _t: AuditorToken,
                       settings: SettingsDep) -> EnvelopeAudit:
    return await envelope_audit(conn, agent_id, seq, read_ca(settings))


@router.get("/reading", response_model=ReadingAudit, responses=_ERR)
async def audit_reading(
    conn: ConnDep, _t: AuditorToken, settings: SettingsDep,
    meter_id: Annotated[str, Query(min_length=1, max_length=200)],
    ts: Annotated[Time, Query(description="the reading's exact timestamp (UTC, ms)")],
) -> ReadingAudit:
    try:
        at = utc(ts)
    except OverflowError:
        raise ProblemError(422, "ts is outside the supported years 1-9999", kind="bad-time") from None
    r = await one(conn, readings_sql.PROVENANCE_AT, [meter_id, at])
    if r is None:
        raise ProblemError(404, f"no reading of meter {meter_id!r} at {at.isoformat()}", kind="not-found")
    evidence = None
    if r["provenance"] == "signed":
        evidence = await envelope_audit(conn, r["agent_id"], r["seq"], read_ca(settings))
    return ReadingAudit(meter_id=r["meter_id"], ts=r["ts"], provenance=r["provenance"],
                        import_batch=r["import_batch"], evidence=evidence)


class AgentPublic(BaseModel):
    agent_id: str
    description: str | None
    created_at: datetime
    disabled_at: datetime | None
    committed_upto: int = Field(description="longest gap-free prefix 1..N of stored seqs")
    keys: int


@router.get("/agents", response_model=Page[AgentPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_agents(request: Request, conn: ConnDep, _t: AuditorToken, page: PageDep,
                      fmt: FormatParam = None) -> Page[AgentPublic] | Response:
    found, nxt = await keyset_page(
        conn, kind="agents",
        select="SELECT a.agent_id, a.description, a.created_at, a.disabled_at, "
               "coalesce(p.committed_upto, 0) AS committed_upto, "
               "(SELECT count(*) FROM agent_keys k WHERE k.agent_id = a.agent_id) AS keys "
               "FROM agents a LEFT JOIN agent_progress p USING (agent_id)",
        where=[], params=[], key=["a.agent_id"], key_types=(str,), cursor=page.cursor, limit=page.limit)
    return page_or_csv(request, fmt, AgentPublic, [AgentPublic(**r) for r in found], nxt)


class SeqRange(BaseModel):
    from_seq: int
    to_seq: int = Field(description="inclusive")


class ConflictPublic(BaseModel):
    seq: int | None
    quarantine_id: int
    detail: str | None
    count: int
    last_seen: datetime


class ChainStatus(BaseModel):
    agent_id: str
    stored_envelopes: int
    first_seq: int | None
    last_seq: int | None
    committed_upto: int
    missing_envelopes: int = Field(description="seqs between 1 and last_seq that are not stored")
    gaps: list[SeqRange]
    gaps_truncated: bool
    verdicts: dict[str, int] = Field(description="stored envelopes by the verdict recorded at ingest")
    unlogged_envelopes: int = Field(description="stored but not yet in the transparency log")
    reading_conflicts: int = Field(
        0, description="signed readings kept aside in reading_conflicts: their (meter, time) was "
                       "already taken (a clock that stepped back, an earlier import)")
    clock_flagged: dict[str, int] = Field(
        default_factory=dict,
        description="envelopes the agent sealed with an untrusted clock (unsynced, jumped); their "
                    "readings' timestamps are compared with care, their seq order still holds")
    conflicts: list[ConflictPublic]
    quarantined_by_reason: dict[str, int] = Field(
        description="distinct quarantined messages claiming this agent, by reason")
    last_received_at: datetime | None


@router.get("/agents/{agent_id}/chain", response_model=ChainStatus, responses=_ERR)
async def chain_status(agent_id: AgentId, conn: ConnDep, _t: AuditorToken,
                       settings: SettingsDep) -> ChainStatus:
    agent = await one(conn, "SELECT a.agent_id, coalesce(p.committed_upto, 0) AS committed_upto "
                      "FROM agents a LEFT JOIN agent_progress p USING (agent_id) WHERE a.agent_id = %s",
                      [agent_id])
    if agent is None:
        raise ProblemError(404, f"no registered agent {agent_id!r}", kind="not-found")
    s = await one(conn, envelopes_sql.CHAIN_TOTALS, [agent_id])
    assert s is not None
    cap = settings.max_gap_ranges
    # a gap is a run of seqs missing between two stored ones, or before the first stored one
    gaps = await rows(conn, envelopes_sql.CHAIN_GAPS, [agent_id, cap + 1])
    verdicts = await rows(conn, envelopes_sql.COUNT_BY_VERDICT, [agent_id])
    rc = await one(conn, "SELECT count(*) AS n FROM reading_conflicts WHERE agent_id = %s", [agent_id])
    clock = await rows(conn, envelopes_sql.COUNT_BY_CLOCK_FLAG, [agent_id])
    quarantined = await rows(conn, quarantine_sql.COUNT_BY_REASON_OF_AGENT, [agent_id])
    conflicts = await rows(conn, quarantine_sql.CONFLICTS_OF_AGENT, [agent_id])
    n, hi = int(s["n"]), s["hi"]
    return ChainStatus(
        agent_id=agent_id, stored_envelopes=n, first_seq=s["lo"], last_seq=hi,
        committed_upto=agent["committed_upto"], missing_envelopes=(hi - n) if hi is not None else 0,
        gaps=[SeqRange(**g) for g in gaps[:cap]], gaps_truncated=len(gaps) > cap,
        verdicts={r["verdict"]: int(r["n"]) for r in verdicts}, unlogged_envelopes=int(s["unlogged"]),
        clock_flagged={ClockStatus(r["clock_status"]).name.lower(): int(r["n"]) for r in clock},
        reading_conflicts=int(rc["n"]) if rc else 0,
        conflicts=[ConflictPublic(**c) for c in conflicts],
        quarantined_by_reason={r["reason"]: int(r["n"]) for r in quarantined},
        last_received_at=s["last"])


class QuarantinePublic(BaseModel):
    id: int
    reason: str
    detail: str | None
    claimed_agent_id: str | None = Field(description="as claimed by the message: untrusted")
    seq: int | None
    sha256: str
    size_bytes: int = Field(description="size of the whole message as received")
    truncated: bool = Field(False, description="only the first 4 KiB of the message are kept "
                            "(oversized, or past its agent's quarantine budget); sha256 is "
                            "of the whole message")
    count: int = Field(description="times this exact message arrived")
    first_seen: datetime
    last_seen: datetime


class QuarantineDetail(QuarantinePublic):
    raw_base64: str


@router.get("/quarantine", response_model=Page[QuarantinePublic], responses={**CSV_RESPONSE, **_ERR})
async def list_quarantine(
    request: Request, conn: ConnDep, _t: AuditorToken, page: PageDep,
    reason: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    agent_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    since: Annotated[Time | None, Query(description="last_seen at or after")] = None,
    fmt: FormatParam = None,
) -> Page[QuarantinePublic] | Response:
    where: list[str] = []
    params: list[str | datetime] = []  # the values of where's %s placeholders, in order
    for cond, v in (("q.reason = %s", reason), ("q.agent_id = %s", agent_id)):
        if v is not None:
            where.append(cond)
            params.append(v)
    if since is not None:
        try:
            params.append(utc(since))
        except OverflowError:
            raise ProblemError(422, "since is outside the supported years", kind="bad-time") from None
        where.append("q.last_seen >= %s")
    found, nxt = await keyset_page(conn, kind="quarantine", select=quarantine_sql.LIST,
                                   where=where, params=params, key=["q.id"], key_types=(int,),
                                   cursor=page.cursor, limit=page.limit)
    items = [QuarantinePublic(**{**r, "sha256": bytes(r["sha256"]).hex()}) for r in found]
    return page_or_csv(request, fmt, QuarantinePublic, items, nxt)


@router.get("/quarantine/{quarantine_id}", response_model=QuarantineDetail, responses=_ERR)
async def get_quarantined(quarantine_id: Annotated[int, Path(ge=1, le=2**63 - 1)], conn: ConnDep,
                          _t: AuditorToken) -> QuarantineDetail:
    r = await one(conn, quarantine_sql.WITH_RAW_BY_ID, [quarantine_id])
    if r is None:
        raise ProblemError(404, f"no quarantined message {quarantine_id}", kind="not-found")
    raw = bytes(r.pop("raw"))
    return QuarantineDetail(**{**r, "sha256": bytes(r["sha256"]).hex(),
                               "raw_base64": base64.b64encode(raw).decode()})
