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
  `ca_certificate_pem`, `log_public_key_pem`: when the server is configured with them.
Read in one REPEATABLE READ snapshot, so the envelopes, leaves and heads agree.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from cloud.api.deps import AuditorToken, ConnDep, SettingsDep
from cloud.api.evidence import consistency_path, inclusion_paths, leaf_hashes
from cloud.api.listing import one, rows
from cloud.api.params import Time, check_range
from cloud.api.problems import ProblemError, responses
from cloud.api.routes.tlog import head_public

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
) -> Response:
    start, end = check_range(start, end, settings.max_range_report, "an export")
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        bundle, raws = await _collect(conn, agent_id, start, end, settings)
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


async def _collect(conn: ConnDep, agent_id: str, start: datetime, end: datetime,
                   settings: SettingsDep) -> tuple[dict[str, Any], list[tuple[int, bytes]]]:
    if await one(conn, "SELECT 1 AS x FROM agents WHERE agent_id = %s", [agent_id]) is None:
        raise ProblemError(404, f"no registered agent {agent_id!r}", kind="not-found")
    cap = settings.export_max_envelopes
    envs = await rows(conn, "SELECT seq, raw, sha256, key_id, sent_at, received_at, verdict, log_index "
                      "FROM envelopes WHERE agent_id = %s AND sent_at >= %s AND sent_at < %s "
                      "ORDER BY seq LIMIT %s", [agent_id, start, end, cap + 1])
    if len(envs) > cap:
        raise ProblemError(413, f"more than {cap} envelopes in the period; export shorter periods",
                           kind="export-too-large")
    head = await one(conn, "SELECT tree_size, timestamp_ms, root_hash, key_id, signature "
                     "FROM tlog_tree_heads ORDER BY tree_size DESC LIMIT 1")
    size = int(head["tree_size"]) if head else 0
    leaves = await leaf_hashes(conn, size) if size and envs else []
    in_tree = [e for e in envs if e["log_index"] is not None and e["log_index"] < size]
    paths = await inclusion_paths(leaves, [int(e["log_index"]) for e in in_tree])
    proof_of = {e["seq"]: p for e, p in zip(in_tree, paths, strict=True)}
    earlier: list[dict[str, Any]] = []
    if head is not None:
        t0, t1 = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        old_heads = await rows(conn, "SELECT tree_size, timestamp_ms, root_hash, key_id, signature "
                               "FROM tlog_tree_heads WHERE timestamp_ms >= %s AND timestamp_ms < %s "
                               "AND tree_size < %s ORDER BY tree_size LIMIT 100", [t0, t1, size])
        if old_heads and not leaves:
            leaves = await leaf_hashes(conn, size)
        for h in old_heads:
            proof = await consistency_path(leaves, int(h["tree_size"]))
            earlier.append({"tree_head": head_public(h).model_dump(mode="json"),
                            "consistency_to_latest": [p.hex() for p in proof]})
    pred = None
    if envs and envs[0]["seq"] > 1:
        p = await one(conn, "SELECT seq, sha256 FROM envelopes WHERE agent_id = %s AND seq = %s",
                      [agent_id, envs[0]["seq"] - 1])
        pred = {"seq": p["seq"], "sha256": bytes(p["sha256"]).hex()} if p else None
    gaps, prev_seq = [], None
    for e in envs:
        if prev_seq is not None and e["seq"] > prev_seq + 1:
            gaps.append({"from_seq": prev_seq + 1, "to_seq": e["seq"] - 1})
        prev_seq = e["seq"]
    keys = await rows(conn, "SELECT key_id, public_key, certificate_pem, valid_from, valid_to, from_seq, "
                      "revoked_at, revocation_reason FROM agent_keys WHERE agent_id = %s ORDER BY from_seq",
                      [agent_id])
    bundle = {
        "format": FORMAT, "version": VERSION, "generated_at": datetime.now(UTC).isoformat(),
        "agent_id": agent_id, "period": {"start": start.isoformat(), "end": end.isoformat()},
        "tree_head": head_public(head).model_dump(mode="json") if head else None,
        "earlier_heads": earlier,
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
    }
    return bundle, [(e["seq"], bytes(e["raw"])) for e in envs]
