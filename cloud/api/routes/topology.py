"""The grid and customer archive: regions, feeders, transformers, meters, customers.

Lists filter on the parents (a customer's transformer, feeder or region) and page by id.
Coordinates are WGS84 degrees (`lat`, `lon`); the map layers are in routes/map_layers.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from cloud.api.deps import ConnDep, ReaderToken
from cloud.api.listing import keyset_page, one
from cloud.api.params import FormatParam, PageDep
from cloud.api.problems import ProblemError, responses
from cloud.api.tabular import CSV_RESPONSE, Page, page_or_csv

router = APIRouter(prefix="/v1", tags=["topology"])

Id = Annotated[str, Path(min_length=1, max_length=200)]
IdFilter = Annotated[str | None, Query(min_length=1, max_length=200)]
_ERR = responses(401, 403, 404, 422, 429)


class RegionPublic(BaseModel):
    region_id: str
    name: str
    substation_gateway_id: str | None
    lat: float | None = Field(description="WGS84 degrees")
    lon: float | None = Field(description="WGS84 degrees")


class FeederPublic(BaseModel):
    feeder_id: str
    region_id: str
    head_meter_id: str | None
    length_km: float | None
    rural: bool


class TransformerPublic(BaseModel):
    transformer_id: str
    feeder_id: str
    region_id: str
    gateway_id: str | None
    balance_meter_id: str | None
    rating_kva: float
    no_load_loss_w: float
    load_loss_w: float = Field(description="copper loss at rated current")
    distance_km: float | None
    lat: float | None
    lon: float | None


class MeterPublic(BaseModel):
    meter_id: str
    kind: Literal["customer", "balance", "feeder_head"]
    make: str | None
    model: str
    register_map: str
    serial: str | None
    customer_id: str | None
    transformer_id: str | None
    feeder_id: str | None
    gateway_id: str | None
    unit_id: int | None
    phases: int | None


class CustomerPublic(BaseModel):
    customer_id: str
    customer_class: str = Field(description="residential / commercial / industrial / ...")
    meter_id: str | None
    transformer_id: str
    feeder_id: str
    region_id: str
    tariff_per_kwh: float = Field(description="in `currency` per kWh")
    currency: str
    contract_kva: float | None
    is_special: bool
    has_pv: bool
    pv_kwp: float
    phases: int | None
    phase: int | None = Field(description="0, 1, 2 for L1-L3 of a single-phase customer")
    service_m: float | None = Field(description="service cable length")
    lat: float | None
    lon: float | None


_REGION = "SELECT region_id, name, substation_gateway_id, lat, lon FROM regions r"
_FEEDER = "SELECT feeder_id, region_id, head_meter_id, length_km, rural FROM feeders f"
_TRANSFORMER = ("SELECT t.transformer_id, t.feeder_id, f.region_id, t.gateway_id, t.balance_meter_id, "
                "t.rating_kva, t.no_load_loss_w, t.load_loss_w, t.distance_km, t.lat, t.lon "
                "FROM transformers t JOIN feeders f USING (feeder_id)")
_METER = ("SELECT meter_id, kind, make, model, register_map, serial, customer_id, transformer_id, "
          "feeder_id, gateway_id, unit_id, phases FROM meters m")
_CUSTOMER = ("SELECT c.customer_id, c.class AS customer_class, "
             "(SELECT min(m.meter_id) FROM meters m WHERE m.customer_id = c.customer_id) AS meter_id, "
             "c.transformer_id, t.feeder_id, f.region_id, c.tariff_per_kwh::float8 AS tariff_per_kwh, "
             "c.currency, c.contract_kva, c.is_special, c.has_pv, c.pv_kwp, c.phases, c.phase, "
             "c.service_m, c.lat, c.lon FROM customers c JOIN transformers t USING (transformer_id) "
             "JOIN feeders f ON f.feeder_id = t.feeder_id")


def _filters(pairs: list[tuple[str, Any]]) -> tuple[list[str], list[Any]]:
    where, params = [], []
    for cond, value in pairs:
        if value is not None:
            where.append(cond)
            params.append(value)
    return where, params


@router.get("/regions", response_model=Page[RegionPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_regions(request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep,
                       fmt: FormatParam = None) -> Page[RegionPublic] | Response:
    found, nxt = await keyset_page(conn, kind="regions", select=_REGION, where=[], params=[],
                                   key=["r.region_id"], key_types=(str,), cursor=page.cursor,
                                   limit=page.limit)
    return page_or_csv(request, fmt, RegionPublic, [RegionPublic(**r) for r in found], nxt)


@router.get("/regions/{region_id}", response_model=RegionPublic, responses=_ERR)
async def get_region(region_id: Id, conn: ConnDep, _t: ReaderToken) -> RegionPublic:
    return RegionPublic(**await _get(conn, _REGION + " WHERE region_id = %s", region_id, "region"))


@router.get("/feeders", response_model=Page[FeederPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_feeders(request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep,
                       region_id: IdFilter = None, rural: bool | None = None,
                       fmt: FormatParam = None) -> Page[FeederPublic] | Response:
    where, params = _filters([("f.region_id = %s", region_id), ("f.rural = %s", rural)])
    found, nxt = await keyset_page(conn, kind="feeders", select=_FEEDER, where=where, params=params,
                                   key=["f.feeder_id"], key_types=(str,), cursor=page.cursor,
                                   limit=page.limit)
    return page_or_csv(request, fmt, FeederPublic, [FeederPublic(**r) for r in found], nxt)


@router.get("/feeders/{feeder_id}", response_model=FeederPublic, responses=_ERR)
async def get_feeder(feeder_id: Id, conn: ConnDep, _t: ReaderToken) -> FeederPublic:
    return FeederPublic(**await _get(conn, _FEEDER + " WHERE feeder_id = %s", feeder_id, "feeder"))


@router.get("/transformers", response_model=Page[TransformerPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_transformers(request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep,
                            feeder_id: IdFilter = None, region_id: IdFilter = None,
                            min_rating_kva: Annotated[float | None, Query(ge=0, le=1e9)] = None,
                            fmt: FormatParam = None) -> Page[TransformerPublic] | Response:
    where, params = _filters([("t.feeder_id = %s", feeder_id), ("f.region_id = %s", region_id),
                              ("t.rating_kva >= %s", min_rating_kva)])
    found, nxt = await keyset_page(conn, kind="transformers", select=_TRANSFORMER, where=where,
                                   params=params, key=["t.transformer_id"], key_types=(str,),
                                   cursor=page.cursor, limit=page.limit)
    return page_or_csv(request, fmt, TransformerPublic, [TransformerPublic(**r) for r in found], nxt)


@router.get("/transformers/{transformer_id}", response_model=TransformerPublic, responses=_ERR)
async def get_transformer(transformer_id: Id, conn: ConnDep, _t: ReaderToken) -> TransformerPublic:
    row = await _get(conn, _TRANSFORMER + " WHERE t.transformer_id = %s", transformer_id, "transformer")
    return TransformerPublic(**row)


@router.get("/meters", response_model=Page[MeterPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_meters(request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep,
                      kind: Literal["customer", "balance", "feeder_head"] | None = None,
                      transformer_id: IdFilter = None, feeder_id: IdFilter = None,
                      fmt: FormatParam = None) -> Page[MeterPublic] | Response:
    where, params = _filters([("m.kind = %s", kind), ("m.transformer_id = %s", transformer_id),
                              ("m.feeder_id = %s", feeder_id)])
    found, nxt = await keyset_page(conn, kind="meters", select=_METER, where=where, params=params,
                                   key=["m.meter_id"], key_types=(str,), cursor=page.cursor,
                                   limit=page.limit)
    return page_or_csv(request, fmt, MeterPublic, [MeterPublic(**r) for r in found], nxt)


@router.get("/meters/{meter_id}", response_model=MeterPublic, responses=_ERR)
async def get_meter(meter_id: Id, conn: ConnDep, _t: ReaderToken) -> MeterPublic:
    return MeterPublic(**await _get(conn, _METER + " WHERE meter_id = %s", meter_id, "meter"))


@router.get("/customers", response_model=Page[CustomerPublic], responses={**CSV_RESPONSE, **_ERR})
async def list_customers(
    request: Request, conn: ConnDep, _t: ReaderToken, page: PageDep,
    transformer_id: IdFilter = None, feeder_id: IdFilter = None, region_id: IdFilter = None,
    customer_class: Annotated[str | None, Query(alias="class", min_length=1, max_length=100)] = None,
    has_pv: bool | None = None, is_special: bool | None = None, fmt: FormatParam = None,
) -> Page[CustomerPublic] | Response:
    where, params = _filters([
        ("c.transformer_id = %s", transformer_id), ("t.feeder_id = %s", feeder_id),
        ("f.region_id = %s", region_id), ("c.class = %s", customer_class),
        ("c.has_pv = %s", has_pv), ("c.is_special = %s", is_special)])
    found, nxt = await keyset_page(conn, kind="customers", select=_CUSTOMER, where=where,
                                   params=params, key=["c.customer_id"], key_types=(str,),
                                   cursor=page.cursor, limit=page.limit)
    return page_or_csv(request, fmt, CustomerPublic, [CustomerPublic(**r) for r in found], nxt)


@router.get("/customers/{customer_id}", response_model=CustomerPublic, responses=_ERR)
async def get_customer(customer_id: Id, conn: ConnDep, _t: ReaderToken) -> CustomerPublic:
    row = await _get(conn, _CUSTOMER + " WHERE c.customer_id = %s", customer_id, "customer")
    return CustomerPublic(**row)


async def _get(conn: ConnDep, query: str, key: str, what: str) -> dict[str, Any]:
    row = await one(conn, query, [key])
    if row is None:
        raise ProblemError(404, f"no {what} {key!r}", kind="not-found")
    return row
