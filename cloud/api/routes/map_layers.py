"""GeoJSON (RFC 7946) map layers: transformers and customers as Point features.

Records without coordinates are left out (a map cannot place them; the lists in topology.py
still have them). Pages of up to `max_map_features`; the cursor rides as a foreign member
`next_cursor` of the FeatureCollection, which GeoJSON readers ignore.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from cloud.api.deps import ConnDep, ReaderToken, SettingsDep
from cloud.api.listing import keyset_page
from cloud.api.problems import ProblemError, responses

router = APIRouter(prefix="/v1/map", tags=["topology"])
GEOJSON = "application/geo+json"
IdFilter = Annotated[str | None, Query(min_length=1, max_length=200)]
_NUM = r"-?[0-9]+(\.[0-9]+)?"
BBox = Annotated[str | None, Query(max_length=200, pattern=rf"^{_NUM}(,{_NUM}){{3}}$",
                                   description="min_lon,min_lat,max_lon,max_lat (WGS84 degrees)")]
Limit = Annotated[int | None, Query(ge=1, description="features per page (at most max_map_features)")]
Cursor = Annotated[str | None, Query(max_length=2048)]


class Point(BaseModel):
    type: Literal["Point"] = "Point"
    coordinates: list[float]  # [lon, lat], WGS84 degrees (RFC 7946 order)


class Feature(BaseModel):
    type: Literal["Feature"] = "Feature"
    id: str
    geometry: Point
    properties: dict[str, Any]


class FeatureCollection(BaseModel):
    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[Feature]
    next_cursor: str | None


_DOC = {200: {"content": {GEOJSON: {}}, "description": "a GeoJSON FeatureCollection"},
        **responses(401, 403, 422, 429)}

_TX = ("SELECT t.transformer_id AS id, t.lon, t.lat, t.feeder_id, f.region_id, t.rating_kva, "
       "t.balance_meter_id FROM transformers t JOIN feeders f USING (feeder_id)")
_CU = ("SELECT c.customer_id AS id, c.lon, c.lat, c.class AS customer_class, c.transformer_id, "
       "t.feeder_id, f.region_id, c.has_pv, c.is_special, "
       "(SELECT min(m.meter_id) FROM meters m WHERE m.customer_id = c.customer_id) AS meter_id "
       "FROM customers c JOIN transformers t USING (transformer_id) "
       "JOIN feeders f ON f.feeder_id = t.feeder_id")


def _bbox(bbox: str | None, alias: str) -> tuple[list[str], list[Any]]:
    if bbox is None:
        return [], []
    try:
        w, s, e, n = (float(x) for x in bbox.split(","))
    except ValueError:
        raise ProblemError(422, "bbox must be min_lon,min_lat,max_lon,max_lat", kind="bad-bbox") from None
    if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
        raise ProblemError(422, "bbox must be min_lon,min_lat,max_lon,max_lat within -180..180 / -90..90 "
                      "with min <= max", kind="bad-bbox")
    return [f"{alias}.lon BETWEEN %s AND %s", f"{alias}.lat BETWEEN %s AND %s"], [w, e, s, n]


async def _layer(conn: ConnDep, kind: str, select: str, alias: str, key: str,
                 where: list[str], params: list[Any], bbox: str | None, cursor: str | None,
                 limit: int) -> JSONResponse:
    bw, bp = _bbox(bbox, alias)
    found, nxt = await keyset_page(
        conn, kind=kind, select=select,
        where=[f"{alias}.lat IS NOT NULL", f"{alias}.lon IS NOT NULL", *where, *bw],
        params=[*params, *bp], key=[key], key_names=["id"], key_types=(str,), cursor=cursor,
        limit=limit)
    features = []
    for r in found:
        props = {k: v for k, v in r.items() if k not in ("id", "lat", "lon")}
        features.append(Feature(id=r["id"], geometry=Point(coordinates=[r["lon"], r["lat"]]),
                                properties=props))
    body = FeatureCollection(features=features, next_cursor=nxt)
    return JSONResponse(body.model_dump(mode="json"), media_type=GEOJSON)


@router.get("/transformers", response_model=FeatureCollection, responses=_DOC)
async def transformer_layer(
    conn: ConnDep, _t: ReaderToken, settings: SettingsDep, region_id: IdFilter = None,
    feeder_id: IdFilter = None,
    bbox: BBox = None, limit: Limit = None, cursor: Cursor = None,
) -> JSONResponse:
    where, params = [], []
    for cond, v in (("f.region_id = %s", region_id), ("t.feeder_id = %s", feeder_id)):
        if v is not None:
            where.append(cond)
            params.append(v)
    return await _layer(conn, "map-transformers", _TX, "t", "t.transformer_id", where, params, bbox,
                        cursor, _limit(limit, settings.max_map_features))


@router.get("/customers", response_model=FeatureCollection, responses=_DOC)
async def customer_layer(
    conn: ConnDep, _t: ReaderToken, settings: SettingsDep, region_id: IdFilter = None,
    feeder_id: IdFilter = None, transformer_id: IdFilter = None,
    bbox: BBox = None, limit: Limit = None, cursor: Cursor = None,
) -> JSONResponse:
    where, params = [], []
    for cond, v in (("f.region_id = %s", region_id), ("t.feeder_id = %s", feeder_id),
                    ("c.transformer_id = %s", transformer_id)):
        if v is not None:
            where.append(cond)
            params.append(v)
    return await _layer(conn, "map-customers", _CU, "c", "c.customer_id", where, params, bbox,
                        cursor, _limit(limit, settings.max_map_features))


def _limit(limit: int | None, cap: int) -> int:
    if limit is None:
        return cap
    if limit > cap:
        raise ProblemError(422, f"limit {limit} is above the {cap} features a map page holds; page with "
                      "the cursor", kind="limit-too-large")
    return limit
