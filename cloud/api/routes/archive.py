"""The customer archive's health (engineer, auditor, admin; accepting a correction: admin):
the stored checks, their completeness findings (with evidence and a fix) and per-region counts
over time, the connectivity suspicions (the transformer and phase the voltages and the energy
balance say a meter hangs on), and the append-only log of accepted corrections.

Checks are made with `wattrail archive check` (cloud/archive/store.py, docs/archive.md); the
API reads them. A check never changes the archive: only an accepted suspicion does, one meter
at a time, through `cloud.archive.store.accept` (the CLI's code, sync psycopg), which this
runs in a worker thread on a short-lived connection of its own, as the topology import does.
Listings of one check default to the latest; `check_id=` pins one.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from cloud.api import cursors
from cloud.api.deps import AdminToken, ConnDep, ReaderToken, SettingsDep
from cloud.api.listing import keyset_page, one, rows
from cloud.api.params import FormatParam, PageDep, Time, utc
from cloud.api.problems import ProblemError, responses
from cloud.api.tabular import CSV_RESPONSE, Page, page_or_csv
from cloud.archive import completeness, store

router = APIRouter(prefix="/v1/archive", tags=["customer archive"])
audit = logging.getLogger("wattrail.audit")  # who changed the archive and why, one line each

CheckId = Annotated[int | None, Query(ge=1, le=2**63 - 1, description="default: the latest check")]
IdFilter = Annotated[str | None, Query(min_length=1, max_length=200)]
MeterId = Annotated[str, Path(min_length=1, max_length=200)]
Severity = Literal["high", "medium", "low"]
Status = Literal["open", "accepted", "superseded"]
_ERR = responses(401, 403, 404, 422, 429)


class CheckPublic(BaseModel):
    check_id: int
    started_at: datetime
    finished_at: datetime
    period_start: datetime = Field(description="UTC start of the readings checked")
    period_end: datetime
    step_s: int
    findings: int = Field(description="completeness findings of the check")
    suspicions: int = Field(description="connectivity suspicions of the check")
    notes: list[Any] = Field(description="what could not run and why")
    parameters: dict[str, Any] = Field(description="the thresholds of both analyses")


class FindingPublic(BaseModel):
    check_id: int
    finding_no: int
    kind: str = Field(description="not_in_archive, never_reported, missing_tariff, ... (docs/archive.md)")
    object_id: str = Field(description="the meter, customer or transformer it is about")
    region_id: str | None
    severity: Severity
    evidence: dict[str, Any]
    fix: str = Field(description="what to do about it")


class FindingCount(BaseModel):
    check_id: int
    finished_at: datetime
    period_start: datetime
    period_end: datetime
    region_id: str | None = Field(description="null: findings without a region (unknown meters)")
    kind: str
    n: int


class SuspicionPublic(BaseModel):
    check_id: int
    rank: int = Field(description="1 = the most confident suspicion of the check")
    meter_id: str
    kind: Literal["transformer", "phase"]
    recorded_transformer_id: str
    recorded_phase: int | None = Field(description="0..2 = L1..L3; null: three-phase or unknown")
    suggested_transformer_id: str
    suggested_phase: int | None
    confidence: float = Field(description="0..1")
    evidence: dict[str, Any] = Field(description="correlations, z-scores, balance gain")
    status: Status = Field(description="open; accepted (applied); superseded by a newer check")


class CorrectionPublic(BaseModel):
    correction_id: int
    at: datetime
    actor: str = Field(description="who accepted it (the API token's name, or the CLI's --actor)")
    meter_id: str
    check_id: int | None = Field(description="null: the check has since been deleted")
    old: dict[str, Any] = Field(description="{transformer_id, phase} before")
    new: dict[str, Any] = Field(description="{transformer_id, phase} after")
    comment: str
    recompute_run_id: int | None = Field(description="the analysis run the loss report was "
                                         "rerun as; null: none to rerun yet")


class AcceptCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    check_id: int | None = Field(default=None, ge=1, le=2**63 - 1, description=(
        "the check whose suggestion to apply; default: the latest with an open one for the meter"))
    comment: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500,
                                              pattern=r"^[^\x00]*$")] = Field(
        description="why (mandatory): the field visit's reference, the work order ...")


class AcceptResult(BaseModel):
    correction_id: int
    meter_id: str
    old: dict[str, Any]
    new: dict[str, Any]
    recompute_run_id: int | None


_CHECK_COLS = ("check_id, started_at, finished_at, period_start, period_end, step_s, findings, "
               "suspicions, notes, parameters")


async def _resolve_check(conn: ConnDep, check_id: int | None) -> int:
    if check_id is None:
        r = await one(conn, "SELECT max(check_id) AS check_id FROM archive_checks")
        if r is None or r["check_id"] is None:
            raise ProblemError(404, "no archive check yet: run `wattrail archive check`",
                               kind="no-archive-check")
        return int(r["check_id"])
    if await one(conn, "SELECT 1 AS x FROM archive_checks WHERE check_id = %s", [check_id]) is None:
        raise ProblemError(404, f"no archive check {check_id}; list them at /v1/archive/checks",
                           kind="not-found")
    return check_id


def _known_kind(kind: str | None) -> None:
    # checked here, not in the schema: the kinds grow with cloud/archive/completeness.py
    if kind is not None and kind not in completeness.KINDS:
        raise ProblemError(422, f"unknown finding kind {kind!r}; use one of "
                           f"{', '.join(completeness.KINDS)}", kind="bad-filter")


async def _newest_first(conn: ConnDep, kind: str, select: str, id_col: str, where: list[str],
                        params: list[Any], cursor: str | None, limit: int
                        ) -> tuple[list[dict[str, Any]], str | None]:
    """Keyset page by a descending id (the index order), the cursor holding the last id sent."""
    after = cursors.decode(kind, cursor, (int,))
    conds, args = list(where), list(params)
    if after is not None:
        conds.append(f"{id_col} < %s")
        args.append(after[0])
    text = select + (" WHERE " + " AND ".join(conds) if conds else "")
    found = await rows(conn, f"{text} ORDER BY {id_col} DESC LIMIT %s", [*args, limit + 1])
    name = id_col.rsplit(".", 1)[-1]
    nxt = cursors.encode(kind, [found[limit - 1][name]]) if len(found) > limit else None
    return found[:limit], nxt


@router.get("/checks", response_model=Page[CheckPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_checks(request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep,
                      fmt: FormatParam = None) -> Page[CheckPublic] | Response:
    """Newest first."""
    found, nxt = await _newest_first(conn, "archive-checks", f"SELECT {_CHECK_COLS} FROM archive_checks",
                                     "check_id", [], [], page.cursor, page.limit)
    return page_or_csv(request, fmt, CheckPublic, [CheckPublic(**r) for r in found], nxt)


@router.get("/issues", response_model=Page[FindingPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_issues(
    request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep, check_id: CheckId = None,
    kind: Annotated[str | None, Query(min_length=1, max_length=64, description=(
        "one of the completeness kinds (docs/archive.md)"))] = None,
    region_id: IdFilter = None, severity: Severity | None = None, fmt: FormatParam = None,
) -> Page[FindingPublic] | Response:
    """The completeness findings of one check, in the order the check wrote them."""
    _known_kind(kind)
    cid = await _resolve_check(conn, check_id)
    where, params = ["f.check_id = %s"], list[Any]([cid])
    for cond, v in (("f.kind = %s", kind), ("f.region_id = %s", region_id), ("f.severity = %s", severity)):
        if v is not None:
            where.append(cond)
            params.append(v)
    found, nxt = await keyset_page(
        conn, kind=f"archive-issues-{cid}", where=where, params=params,
        select="SELECT f.check_id, f.finding_no, f.kind, f.object_id, f.region_id, f.severity, "
               "f.evidence, f.fix FROM archive_findings f",
        key=["f.finding_no"], key_types=(int,), cursor=page.cursor, limit=page.limit)
    return page_or_csv(request, fmt, FindingPublic, [FindingPublic(**r) for r in found], nxt)


@router.get("/issues/counts", response_model=Page[FindingCount], responses={**CSV_RESPONSE, **_ERR})
async def issue_counts(
    request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep,
    since: Annotated[Time | None, Query(description="checks finished from this time on "
                                        "(default: all); no offset means UTC")] = None,
    region_id: IdFilter = None,
    kind: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    fmt: FormatParam = None,
) -> Page[FindingCount] | Response:
    """Findings per check, region and kind, oldest check first: the archive's completeness
    over time (a kind without findings in a region has no row)."""
    _known_kind(kind)
    where: list[str] = []
    params: list[Any] = []
    for cond, v in (("c.finished_at >= %s", utc(since) if since is not None else None),
                    ("fc.region_id = %s", region_id), ("fc.kind = %s", kind)):
        if v is not None:
            where.append(cond)
            params.append(v)
    found, nxt = await keyset_page(
        conn, kind="archive-counts", where=where, params=params,
        select="SELECT fc.check_id, c.finished_at, c.period_start, c.period_end, fc.region_id, fc.kind, "
               "fc.n FROM archive_finding_counts fc JOIN archive_checks c ON c.check_id = fc.check_id",
        key=["fc.check_id", "fc.region_id", "fc.kind"], key_types=(int, str, str),
        cursor=page.cursor, limit=page.limit)
    items = [FindingCount(**{**r, "region_id": r["region_id"] or None}) for r in found]
    return page_or_csv(request, fmt, FindingCount, items, nxt)


_SUSPICION_COLS = ("s.check_id, s.rank, s.meter_id, s.kind, s.recorded_transformer_id, s.recorded_phase, "
                   "s.suggested_transformer_id, s.suggested_phase, s.confidence, s.evidence, s.status")


@router.get("/connectivity", response_model=Page[SuspicionPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_suspicions(
    request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep, check_id: CheckId = None,
    status: Status | None = None,
    kind: Annotated[Literal["transformer", "phase"] | None, Query(
        description="transformer: on another transformer; phase: on another phase")] = None,
    fmt: FormatParam = None,
) -> Page[SuspicionPublic] | Response:
    """The connectivity suspicions of one check, most confident first (by rank)."""
    cid = await _resolve_check(conn, check_id)
    where, params = ["s.check_id = %s"], list[Any]([cid])
    for cond, v in (("s.status = %s", status), ("s.kind = %s", kind)):
        if v is not None:
            where.append(cond)
            params.append(v)
    found, nxt = await keyset_page(
        conn, kind=f"archive-connectivity-{cid}", where=where,
        select=f"SELECT {_SUSPICION_COLS} FROM connectivity_suspicions s", params=params,
        key=["s.rank"], key_types=(int,), cursor=page.cursor, limit=page.limit)
    return page_or_csv(request, fmt, SuspicionPublic, [SuspicionPublic(**r) for r in found], nxt)


def _accept(dsn: str, meter_id: str, actor: str, check_id: int | None, comment: str) -> store.Correction:
    # autocommit: store.accept opens its own transaction, then reruns the loss report after it
    with psycopg.connect(dsn, autocommit=True) as conn:
        return store.accept(conn, meter_id, actor=actor, check_id=check_id, comment=comment,
                            recompute=True)


@router.post("/connectivity/{meter_id}/accept", status_code=201, response_model=AcceptResult,
             responses=responses(401, 403, 404, 409, 422, 429))
async def accept_suspicion(meter_id: MeterId, body: AcceptCreate, conn: ConnDep, token: AdminToken,
                           settings: SettingsDep) -> AcceptResult:
    """Apply the meter's open suspicion to the archive (its customer's transformer and phase),
    log it in the corrections, and rerun the latest loss analysis on the corrected archive.
    404: the meter was never suspected (in that check); 409: its suspicion is no longer open
    (accepted already, or superseded by a newer check) or there is no customer to correct."""
    if body.check_id is not None:
        await _resolve_check(conn, body.check_id)
    q = "SELECT 1 AS x FROM connectivity_suspicions WHERE meter_id = %s"
    if await one(conn, q + (" AND check_id = %s" if body.check_id is not None else ""),
                 [meter_id, *([body.check_id] if body.check_id is not None else [])]) is None:
        where = f" in check {body.check_id}" if body.check_id is not None else ""
        raise ProblemError(404, f"meter {meter_id!r} has no connectivity suspicion{where}; list "
                           "them at /v1/archive/connectivity", kind="not-found")
    try:
        c = await asyncio.to_thread(_accept, settings.dsn, meter_id, token.name, body.check_id, body.comment)
    except store.CorrectionError as exc:
        raise ProblemError(409, str(exc), kind="suspicion-not-open") from exc
    # %r: a name or comment with a line break cannot forge a second audit line
    audit.info("archive correction: id=%d meter=%r old=%r new=%r recompute_run=%s by=%r token_id=%d "
               "comment=%r", c.correction_id, meter_id, c.old, c.new, c.recompute_run_id, token.name,
               token.id, body.comment)
    return AcceptResult(correction_id=c.correction_id, meter_id=c.meter_id, old=c.old, new=c.new,
                        recompute_run_id=c.recompute_run_id)


@router.get("/corrections", response_model=Page[CorrectionPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_corrections(request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep,
                           meter_id: IdFilter = None, fmt: FormatParam = None
                           ) -> Page[CorrectionPublic] | Response:
    """The append-only log of accepted corrections, newest first."""
    select = ("SELECT correction_id, at, actor, meter_id, check_id, old, new, comment, recompute_run_id "
              "FROM archive_corrections")
    where, params = ([], []) if meter_id is None else (["meter_id = %s"], [meter_id])
    kind = "archive-corrections" + (f"-{meter_id}" if meter_id is not None else "")
    found, nxt = await _newest_first(conn, kind, select, "correction_id", where, params, page.cursor,
                                     page.limit)
    return page_or_csv(request, fmt, CorrectionPublic, [CorrectionPublic(**r) for r in found], nxt)
