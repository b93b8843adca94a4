"""`import_topology`: load the grid file (docs/grid-file.md) into the customer archive.

Every record is checked first (`load_grid`, cloud/store/grid_file.py) and all problems are
reported together, each with its JSON position and line; then everything is upserted in one
transaction, so a bad file changes nothing and importing the same file twice leaves the same
rows. Keys the archive does not know are ignored (the format allows new optional keys);
`contract_kva` and `serial` are read when present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from cloud.store.grid_file import MAX_GRID_BYTES, load_grid

_MAKES = {"sdm630": "Eastron", "sdm120": "Eastron", "em24": "Carlo Gavazzi", "sunspec203": "SunSpec"}

# typical distribution-transformer losses where the archive has no nameplate (share of the
# rating): no-load 0.28 %, load loss at rated current 1.5 % (EN 50588-1 class values for
# 25-250 kVA units are within a factor 2 of these). The analysis fits both from the data
# wherever a transformer has quiet days, so these only seed it (docs/analytics.md).
TYPICAL_NO_LOAD, TYPICAL_LOAD_LOSS = 0.0028, 0.015


def _upsert(cur: psycopg.Cursor, table: str, key: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    cols = list(rows[0])
    rest = [c for c in cols if c != key]
    updates = ", ".join(f"{c} = excluded.{c}" for c in rest)
    old = ", ".join(f"{table}.{c}" for c in rest)
    new = ", ".join(f"excluded.{c}" for c in rest)
    # the WHERE keeps unchanged rows untouched (updated_at too): a re-import writes nothing
    cur.executemany(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('%s' for _ in cols)})"
        f" ON CONFLICT ({key}) DO UPDATE SET {updates}, updated_at = now()"
        f" WHERE ({old}) IS DISTINCT FROM ({new})",
        [[r[c] for c in cols] for r in rows])


def _meter(mid: str, kind: str, model: str, **refs: Any) -> dict[str, Any]:
    row = {"meter_id": mid, "kind": kind, "make": _MAKES.get(model), "model": model,
           "register_map": model, "serial": None, "customer_id": None, "transformer_id": None,
           "feeder_id": None, "gateway_id": None, "unit_id": None, "phases": None}
    row.update(refs)
    return row


def import_topology(conn: psycopg.Connection, path: str | Path, *,
                    max_bytes: int = MAX_GRID_BYTES, currency: str | None = None) -> dict[str, int]:
    """Import (or re-import) a grid file (JSON, or the MDM CSV when `path` ends in .csv, with
    `currency` for its tariffs); return how many records of each kind it holds.
    Raises TopologyValidationError listing the problems (the first MAX_PROBLEMS, and the count
    of all); nothing is written then."""
    doc = load_grid(path, max_bytes=max_bytes, currency=currency)
    return write_grid_doc(conn, doc)


def grid_notes(doc: dict[str, Any]) -> list[str]:
    """What an import assumed for what the file did not say (printed by the CLI)."""
    out = []
    no_np = sum(1 for t in doc["transformers"]
                if t.get("no_load_loss_w") is None or t.get("load_loss_w") is None)
    if no_np:
        out.append(f"{no_np} transformer(s) without nameplate losses: typical values assumed "
                   f"(no-load {TYPICAL_NO_LOAD:.2%}, load loss {TYPICAL_LOAD_LOSS:.1%} of the "
                   "rating); the analysis fits them from the data where it can")
    no_bal = sum(1 for t in doc["transformers"] if t.get("balance_meter_id") is None)
    if no_bal:
        out.append(f"{no_bal} transformer(s) without a balance meter: no energy balance, NTL or "
                   "balance-based suspects for their customers")
    unaddressed = sum(1 for c in doc["customers"] if c.get("unit_id") is None)
    if unaddressed:
        out.append(f"{unaddressed} customer meter(s) without Modbus addressing: fine for imported "
                   "readings; an edge agent cannot poll them")
    return out


UNSPECIFIED_MODEL = "unspecified"  # a meter the archive knows but no register map is given for


def write_grid_doc(conn: psycopg.Connection, doc: dict[str, Any]) -> dict[str, int]:
    """Write a checked grid document (`load_grid`) to the archive in one transaction."""
    currency = doc.get("currency") or "EUR"
    regions = [{"region_id": r["region_id"], "name": r["name"],
                "substation_gateway_id": r.get("substation_gateway_id"), "lat": r.get("lat"),
                "lon": r.get("lon")} for r in doc["regions"]]
    feeders = [{"feeder_id": f["feeder_id"], "region_id": f["region_id"],
                "head_meter_id": f.get("head_meter_id"), "length_km": f.get("length_km"),
                "rural": bool(f.get("rural") or False)} for f in doc["feeders"]]
    transformers = [{
        "transformer_id": t["transformer_id"], "feeder_id": t["feeder_id"],
        "gateway_id": t.get("gateway_id"), "balance_meter_id": t.get("balance_meter_id"),
        "rating_kva": t["rating_kva"],
        "no_load_loss_w": t["no_load_loss_w"] if t.get("no_load_loss_w") is not None
        else TYPICAL_NO_LOAD * t["rating_kva"] * 1000.0,
        "load_loss_w": t["load_loss_w"] if t.get("load_loss_w") is not None
        else TYPICAL_LOAD_LOSS * t["rating_kva"] * 1000.0,
        "distance_km": t.get("distance_km"), "lat": t.get("lat"), "lon": t.get("lon")}
        for t in doc["transformers"]]
    customers = [{"customer_id": c.get("customer_id") or c["meter_id"], "class": c["kind"],
                  "tariff_per_kwh": c["tariff_per_kwh"], "currency": currency,
                  "contract_kva": c.get("contract_kva"), "is_special": bool(c.get("special") or False),
                  "has_pv": (c.get("pv_kwp") or 0) > 0, "pv_kwp": c.get("pv_kwp") or 0.0,
                  "transformer_id": c["transformer_id"], "phases": c.get("phases"),
                  "phase": c.get("phase"), "service_m": c.get("service_m"), "lat": c.get("lat"),
                  "lon": c.get("lon")} for c in doc["customers"]]
    region_gw = {r["region_id"]: r.get("substation_gateway_id") for r in doc["regions"]}
    meters = [_meter(f["head_meter_id"], "feeder_head", f.get("head_meter_model") or UNSPECIFIED_MODEL,
                     feeder_id=f["feeder_id"],
                     gateway_id=region_gw[f["region_id"]] if f.get("head_unit_id") is not None else None,
                     unit_id=f.get("head_unit_id"), phases=3)
              for f in doc["feeders"] if f.get("head_meter_id") is not None]
    tx_feeder = {t["transformer_id"]: t["feeder_id"] for t in doc["transformers"]}
    meters += [_meter(t["balance_meter_id"], "balance", t.get("balance_meter_model") or UNSPECIFIED_MODEL,
                      transformer_id=t["transformer_id"], feeder_id=t["feeder_id"],
                      gateway_id=t.get("gateway_id"), unit_id=1 if t.get("gateway_id") else None,
                      phases=3)
               for t in doc["transformers"] if t.get("balance_meter_id") is not None]
    meters += [_meter(c["meter_id"], "customer", c.get("meter_model") or UNSPECIFIED_MODEL,
                      customer_id=c.get("customer_id") or c["meter_id"],
                      transformer_id=c["transformer_id"], feeder_id=tx_feeder[c["transformer_id"]],
                      gateway_id=c.get("gateway_id"), unit_id=c.get("unit_id"), phases=c.get("phases"),
                      serial=c.get("serial")) for c in doc["customers"]]
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET CONSTRAINTS ALL DEFERRED")  # feeders/transformers <-> meters cycle
        _upsert(cur, "regions", "region_id", regions)
        _upsert(cur, "feeders", "feeder_id", feeders)
        _upsert(cur, "transformers", "transformer_id", transformers)
        _upsert(cur, "customers", "customer_id", customers)
        _upsert(cur, "meters", "meter_id", meters)
    return {"regions": len(regions), "feeders": len(feeders), "transformers": len(transformers),
            "customers": len(customers), "meters": len(meters)}
