"""Analysis runs (engineer, auditor, admin): which periods were analysed, on what data."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from cloud.api.deps import ConnDep, ReaderToken
from cloud.api.listing import keyset_page
from cloud.api.params import FormatParam, PageDep
from cloud.api.problems import responses
from cloud.api.runs import RUN_COLS, RunPublic, resolve_run, run_public
from cloud.api.tabular import CSV_RESPONSE, Page, page_or_csv

router = APIRouter(prefix="/v1/analysis/runs", tags=["reports"])


@router.get("", response_model=Page[RunPublic], responses={**CSV_RESPONSE, **responses(401, 403, 422, 429)})
async def list_runs(request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep,
                    fmt: FormatParam = None) -> Page[RunPublic] | Response:
    """Newest first."""
    found, nxt = await keyset_page(conn, kind="runs", select=f"SELECT {RUN_COLS}, -run_id AS neg_id "
                                   "FROM analysis_runs r", where=[], params=[], key=["-r.run_id"],
                                   key_names=["neg_id"], key_types=(int,), cursor=page.cursor,
                                   limit=page.limit)
    return page_or_csv(request, fmt, RunPublic, [run_public(r) for r in found], nxt)


@router.get("/{run_id}", response_model=RunPublic, responses=responses(401, 403, 404, 422, 429))
async def get_run(run_id: Annotated[int, Path(ge=1, le=2**63 - 1)], conn: ConnDep,
                  _t: ReaderToken) -> RunPublic:
    return run_public(await resolve_run(conn, run_id))
