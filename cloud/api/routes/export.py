"""The audit export: everything an auditor needs to check one agent's envelopes over a period
offline, with no database and no network (`wattrail audit verify BUNDLE`).

Bundle (format `wattrail-audit-bundle` v1; JSON, or a zip of `bundle.json` plus every
envelope as `envelopes/<seq>.cose`):
- `envelopes`: every stored envelope of the agent with sent-at in [start, end), bytes in
  base64, each with its leaf index and inclusion proof against `tree_head` (null when it was
  logged after that head, or not yet);
- `predecessor`: the envelope just before the first one (seq and SHA-256), to check the first
  link of the chain; `chain_gaps`: seqs missing inside the exported range;
- `tree_head`: the latest signed head; `earlier_heads`: the signed heads whose timestamp is in
  the period, each with a consistency proof to `tree_head`;
- `key_certificates`: the agent's registered keys with their X.509 certificates;
  `ca_certificate_pem`, `log_public_key_pem`: when the server is configured with them;
- `known_heads`: with `?known_tree_size=N` (the size of a signed head the auditor already
  holds), a consistency proof from size N to `tree_head`, so the verifier can pin its own copy
  of that head (`wattrail audit verify --tree-head`) instead of trusting the database's;
- `log_window` / `log_leaves`: every leaf the log holds for this agent between the stored
  envelopes just outside the period (seq, index, leaf hash), so a logged envelope that is no
  longer stored shows up as a leaf without its envelope;
- `readings`: the stored readings rows that name one of those seqs as their source, plus the
  rows at every (meter, time) the exported envelopes signed, so the verifier can compare what
  is stored with what was signed; `readings_held_from_ms`: where the oldest `readings` chunk
  starts (retention drops whole chunks from the oldest), null when there is none;
- `reading_conflicts`: the signed readings the ingestor kept aside, naming one of those seqs,
  because their (meter, time) was already taken (an agent clock that stepped back, an import
  that came first, two readings of one meter at one instant in one envelope);
- `log_problems`: what stopped the export from building proofs (a damaged log).
Envelopes: every stored one from the first to the last seq sent in the period (so one whose
stored sent-at was changed still appears, and the verifier compares it with the signed one).
Read in one REPEATABLE READ snapshot, so the envelopes, leaves and heads agree. The export
reports what the database holds and judges nothing: the verifier does.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from cloud.api.deps import AuditorToken, ConnDep, SettingsDep
from cloud.api.evidence import consistency_path, inclusion_paths, leaf_hashes
from cloud.api.listing import one, rows
from cloud.api.params import Time, check_range
from cloud.api.problems import ProblemError, responses
from cloud.api.routes.tlog import head_public
from cloud.store import envelopes_sql, readings_sql
from protocols.envelope import decode_payload, decode_sign1
from protocols.envelope.errors import EnvelopeError
from protocols.reading import MEASURED_FIELDS

router = APIRouter(prefix="/v1/audit", tags=["audit"])
FORMAT, VERSION = "wattrail-audit-bundle", 1

_DOC = {200: {"content": {"application/json": {}, "application/zip": {}},
              "description": "the bundle as JSON, or a zip with `?format=zip`"},
        **responses(401, 403, 404, 413, 422, 429)}


def _read_optional(path: Any) -> str | None:
    if path is None:
        return None
    try:
        return str(path.read_text())
    except OSError as exc:
        raise ProblemError(503, f"a configured file cannot be read ({exc.strerror}): {path}",
                           kind="misconfigured") from exc


@router.get("/export", responses=_DOC, response_class=Response)
async def export_bundle(
    conn: ConnDep, _t: AuditorToken, settings: SettingsDep,
    agent_id: Annotated[str, Query(min_length=1, max_length=200)],
    start: Annotated[Time, Query(description="sent-at from (inclusive)")],
    end: Annotated[Time, Query(description="sent-at until (exclusive)")],
    fmt: Annotated[Literal["json", "zip"], Query(alias="format")] = "json",
    known_tree_size: Annotated[int | None, Query(
        ge=1, le=2**63 - 1, description="size of a signed tree head you hold: the bundle then "
        "proves the latest head consistent with it")] = None,
) -> Response:
    start, end = check_range(start, end, settings.max_range_report, "an export")
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        bundle, raws = await _collect(conn, agent_id, start, end, settings, known_tree_size)
    bundle["ca_certificate_pem"] = _read_optional(settings.ca_cert)
    bundle["log_public_key_pem"] = _read_optional(settings.log_public_key)
    stamp = f"{agent_id}_{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}"
    if fmt == "json":
        return JSONResponse(bundle, headers={
            "Content-Disposition": f'attachment; filename="audit_{_safe(stamp)}.json"'})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bundle.json", json.dumps(bundle, indent=1))
        for seq, raw in raws:
            z.writestr(f"envelopes/{seq:020d}.cose", raw)
    return Response(buf.getvalue(), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="audit_{_safe(stamp)}.zip"'})


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:150]


_CONFLICT_COLS = ("meter_id, (extract(epoch FROM ts) * 1000)::bigint AS ts_ms, "
                  + ", ".join(MEASURED_FIELDS) + ", status, quality, agent_id, seq")


async def _collect(conn: ConnDep, agent_id: str, start: datetime, end: datetime,
                   settings: SettingsDep, known_tree_size: int | None = None,
                   ) -> tuple[dict[str, Any], list[tuple[int, bytes]]]:
    if await one(conn, "SELECT 1 AS x FROM agents WHERE agent_id = %s", [agent_id]) is None:
        raise ProblemError(404, f"no registered agent {agent_id!r}", kind="not-found")
    cap = settings.export_max_envelopes
    span = await one(conn, envelopes_sql.SEQ_SPAN_SENT_IN, [agent_id, start, end])
    lo, hi = (span["lo"], span["hi"]) if span else (None, None)
    envs = [] if lo is None else await rows(
        conn, envelopes_sql.EXPORT_IN_SEQS, [agent_id, lo, hi, cap + 1])
    if len(envs) > cap:
        raise ProblemError(413, f"more than {cap} envelopes in the period; export shorter periods",
                           kind="export-too-large")
    window = await _window(conn, agent_id, lo, hi, start, end)
    head = await one(conn, "SELECT tree_size, timestamp_ms, root_hash, key_id, signature "
                     "FROM tlog_tree_heads ORDER BY tree_size DESC LIMIT 1")
    size = int(head["tree_size"]) if head else 0
    problems: list[str] = []
    leaves: list[bytes] | None = None
    if size:
        try:
            leaves = await leaf_hashes(conn, size)
        except RuntimeError as exc:  # a damaged log: export what there is, the verifier judges
            problems.append(str(exc))
    in_tree = [e for e in envs if e["log_index"] is not None and e["log_index"] < size]
    proof_of: dict[int, list[bytes]] = {}
    if leaves is not None:
        paths = await inclusion_paths(leaves, [int(e["log_index"]) for e in in_tree])
        proof_of = {e["seq"]: p for e, p in zip(in_tree, paths, strict=True)}
    earlier: list[dict[str, Any]] = []
    known: list[dict[str, Any]] = []
    if head is not None and leaves is not None:
        t0, t1 = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        old_heads = await rows(conn, "SELECT tree_size, timestamp_ms, root_hash, key_id, signature "
                               "FROM tlog_tree_heads WHERE timestamp_ms >= %s AND timestamp_ms < %s "
                               "AND tree_size < %s ORDER BY tree_size LIMIT 100", [t0, t1, size])
        for h in old_heads:
            proof = await consistency_path(leaves, int(h["tree_size"]))
            earlier.append({"tree_head": head_public(h).model_dump(mode="json"),
                            "consistency_to_latest": [p.hex() for p in proof]})
        if known_tree_size is not None and known_tree_size <= size:
            proof = await consistency_path(leaves, known_tree_size)
            known.append({"tree_size": known_tree_size,
                          "consistency_to_latest": [p.hex() for p in proof]})
    pred = None
    if envs and envs[0]["seq"] > 1:
        p = await one(conn, envelopes_sql.SEQ_SHA256_AT, [agent_id, envs[0]["seq"] - 1])
        pred = {"seq": p["seq"], "sha256": bytes(p["sha256"]).hex()} if p else None
    gaps, prev_seq = [], None
    for e in envs:
        if prev_seq is not None and e["seq"] > prev_seq + 1:
            gaps.append({"from_seq": prev_seq + 1, "to_seq": e["seq"] - 1})
        prev_seq = e["seq"]
    keys = await rows(conn, "SELECT key_id, public_key, certificate_pem, valid_from, valid_to, from_seq, "
                      "revoked_at, revocation_reason FROM agent_keys WHERE agent_id = %s ORDER BY from_seq",
                      [agent_id])
    log_leaves = await rows(conn, "SELECT seq, idx, leaf_hash FROM tlog_leaves WHERE agent_id = %s "
                            "AND seq >= %s AND (%s::int8 IS NULL OR seq <= %s) ORDER BY seq",
                            [agent_id, window[0], window[1], window[1]])
    readings = await _readings(conn, agent_id, window, envs)
    kept_aside = await rows(
        conn, f"SELECT {_CONFLICT_COLS} FROM reading_conflicts WHERE agent_id = %s AND seq >= %s "
        "AND (%s::int8 IS NULL OR seq <= %s) ORDER BY seq, meter_id, ts, id",
        [agent_id, window[0], window[1], window[1]])
    held = await one(conn, "SELECT (extract(epoch FROM min(range_start)) * 1000)::bigint AS ms "
                     "FROM timescaledb_information.chunks WHERE hypertable_schema = 'public' "
                     "AND hypertable_name = 'readings'")
    bundle = {
        "format": FORMAT, "version": VERSION, "generated_at": datetime.now(UTC).isoformat(),
        "agent_id": agent_id, "period": {"start": start.isoformat(), "end": end.isoformat()},
        "tree_head": head_public(head).model_dump(mode="json") if head else None,
        "earlier_heads": earlier,
        "known_heads": known,
        "log_problems": problems,
        "predecessor": pred,
        "chain_gaps": gaps,
        "envelopes": [{
            "seq": e["seq"], "sha256": bytes(e["sha256"]).hex(), "key_id": bytes(e["key_id"]).hex(),
            "sent_at": e["sent_at"].isoformat(), "received_at": e["received_at"].isoformat(),
            "stored_verdict": e["verdict"], "log_index": e["log_index"],
            "raw_base64": base64.b64encode(bytes(e["raw"])).decode(),
            "inclusion_proof": None if e["seq"] not in proof_of else [p.hex() for p in proof_of[e["seq"]]],
        } for e in envs],
        "key_certificates": [{
            "key_id": bytes(k["key_id"]).hex(), "public_key_hex": bytes(k["public_key"]).hex(),
            "certificate_pem": k["certificate_pem"], "valid_from": k["valid_from"].isoformat(),
            "valid_to": k["valid_to"].isoformat() if k["valid_to"] else None, "from_seq": k["from_seq"],
            "revoked_at": k["revoked_at"].isoformat() if k["revoked_at"] else None,
            "revocation_reason": k["revocation_reason"],
        } for k in keys],
        "log_window": {"from_seq": window[0], "to_seq": window[1]},
        "log_leaves": [{"seq": r["seq"], "idx": r["idx"], "leaf_hash": bytes(r["leaf_hash"]).hex()}
                       for r in log_leaves],
        "readings": readings,
        "reading_conflicts": [dict(r) for r in kept_aside],
        "readings_held_from_ms": held["ms"] if held else None,
    }
    return bundle, [(e["seq"], bytes(e["raw"])) for e in envs]


async def _window(conn: ConnDep, agent_id: str, lo: int | None, hi: int | None,
                  start: datetime, end: datetime) -> tuple[int, int | None]:
    """The seqs strictly between the stored envelopes just outside the export (by seq around
    the exported ones, by sent-at when the period holds none); open-ended at the top when no
    later envelope is stored. Whatever the log or the readings hold in it belongs here."""
    if lo is not None:
        below = await one(conn, envelopes_sql.MAX_SEQ_BELOW, [agent_id, lo])
        above = await one(conn, envelopes_sql.MIN_SEQ_ABOVE, [agent_id, hi])
    else:
        below = await one(conn, envelopes_sql.MAX_SEQ_SENT_BEFORE, [agent_id, start])
        above = await one(conn, envelopes_sql.MIN_SEQ_SENT_FROM, [agent_id, end])
    first = int(below["s"]) + 1 if below and below["s"] is not None else 1
    last = int(above["s"]) - 1 if above and above["s"] is not None else None
    return first, last


async def _readings(conn: ConnDep, agent_id: str, window: tuple[int, int | None],
                    envs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows naming a seq in the window as their source, and the rows at each signed key."""
    meters: list[str] = []
    stamps: list[datetime] = []
    for e in envs:
        try:
            payload = decode_payload(decode_sign1(bytes(e["raw"])).payload)
        except EnvelopeError:
            continue  # undecodable bytes sign nothing; the verifier reports the envelope
        for r in payload.readings:
            try:  # exact, no float; a damaged envelope may claim any time at all
                at = datetime.fromtimestamp(r.ts_ms // 1000, UTC) + timedelta(milliseconds=r.ts_ms % 1000)
            except (ValueError, OverflowError, OSError):
                continue  # no row can be stored there: the verifier reports it as not stored
            meters.append(r.meter_id)
            stamps.append(at)
    found = await rows(
        conn, readings_sql.OF_ENVELOPES_AND_KEYS, [agent_id, window[0], window[1], window[1], meters, stamps])
    return [dict(r) for r in found]
