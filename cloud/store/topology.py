"""`import_topology`: load the grid file (docs/grid-file.md) into the customer archive.

Every record is checked first and all problems are reported together, each with its JSON
position and line; then everything is upserted in one transaction, so a bad file changes
nothing and importing the same file twice leaves the same rows. Keys the archive does not know
are ignored (the format allows new optional keys); `contract_kva` and `serial` are read when
present.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from cloud.store.errors import Problem, TopologyValidationError
from cloud.store.json_lines import element_lines
from protocols.maps import MAP_NAMES

FORMAT, VERSION = "wattrail-grid", 1
SECTIONS = ("regions", "feeders", "transformers", "customers")
_MAKES = {"sdm630": "Eastron", "sdm120": "Eastron", "em24": "Carlo Gavazzi", "sunspec203": "SunSpec"}

Check = Callable[[Any], str | None]  # returns what is wrong, or None


def _str(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else "must be a non-empty string"


def _num(lo: float | None = None, hi: float | None = None, strict_lo: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return "must be a number"
        if lo is not None and (v <= lo if strict_lo else v < lo):
            return f"must be {'>' if strict_lo else '>='} {lo:g}"
        if hi is not None and v > hi:
            return f"must be <= {hi:g}"
        return None
    return check


def _int(lo: int, hi: int) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
        return None if ok else f"must be an integer {lo}..{hi}"
    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _model(v: Any) -> str | None:
    return None if v in MAP_NAMES else f"must be one of {', '.join(MAP_NAMES)}"


_LAT, _LON = _num(-90, 90), _num(-180, 180)
_FIELDS: dict[str, dict[str, Check]] = {
    "regions": {"region_id": _str, "name": _str, "substation_gateway_id": _str, "lat": _LAT,
                "lon": _LON},
    "feeders": {"feeder_id": _str, "region_id": _str, "head_meter_id": _str,
                "head_meter_model": _model, "head_unit_id": _int(1, 247), "length_km": _num(0),
                "rural": _bool},
    "transformers": {"transformer_id": _str, "feeder_id": _str, "gateway_id": _str,
                     "balance_meter_id": _str, "balance_meter_model": _model,
                     "rating_kva": _num(0, strict_lo=True), "no_load_loss_w": _num(0),
                     "load_loss_w": _num(0), "distance_km": _num(0), "lat": _LAT, "lon": _LON},
    "customers": {"meter_id": _str, "customer_id": _str, "kind": _str, "special": _bool,
                  "transformer_id": _str, "gateway_id": _str, "unit_id": _int(2, 247),
                  "meter_model": _model, "phases": _int(1, 3), "tariff_per_kwh": _num(0),
                  "pv_kwp": _num(0), "service_m": _num(0), "lat": _LAT, "lon": _LON},
}
_OPTIONAL: dict[str, dict[str, Check]] = {
    "customers": {"contract_kva": _num(0, strict_lo=True), "serial": _str},
}
_ID = {"regions": "region_id", "feeders": "feeder_id", "transformers": "transformer_id",
       "customers": "customer_id"}
_REFS = {"feeders": ("region_id", "regions"), "transformers": ("feeder_id", "feeders"),
         "customers": ("transformer_id", "transformers")}


def _validate(doc: Any, lines: dict[str, list[int]]) -> list[Problem]:
    if not isinstance(doc, dict):
        return [Problem(1, "the grid file must be one JSON object", "")]
    problems: list[Problem] = []
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        problems.append(Problem(None, f"not a {FORMAT} v{VERSION} file (format={doc.get('format')!r}, "
                                      f"version={doc.get('version')!r})", "format"))
    ids: dict[str, set[str]] = {s: set() for s in SECTIONS}
    meters: dict[str, str] = {}  # meter id -> where it was first seen
    for section in SECTIONS:
        records = doc.get(section)
        if not isinstance(records, list):
            problems.append(Problem(None, f"missing the {section!r} list", section))
            continue
        for i, rec in enumerate(records):
            where = f"{section}[{i}]"
            line = lines.get(section, [])[i] if i < len(lines.get(section, [])) else None
            if not isinstance(rec, dict):
                problems.append(Problem(line, "must be an object", where))
                continue
            rid = rec.get(_ID[section])
            for key, check in _FIELDS[section].items():
                if key not in rec:
                    problems.append(Problem(line, f"missing {key!r}", where, rid))
                elif (msg := check(rec[key])) is not None:
                    problems.append(Problem(line, f"{key} {msg} (got {rec[key]!r})", where, rid))
            for key, check in _OPTIONAL.get(section, {}).items():
                if rec.get(key) is not None and (msg := check(rec[key])) is not None:
                    problems.append(Problem(line, f"{key} {msg} (got {rec[key]!r})", where, rid))
            if isinstance(rid, str):
                if rid in ids[section]:
                    problems.append(Problem(line, f"duplicate {_ID[section]} {rid!r}", where, rid))
                ids[section].add(rid)
            if section in _REFS:
                key, target = _REFS[section]
                ref = rec.get(key)
                if isinstance(ref, str) and ref not in ids[target]:
                    problems.append(Problem(line, f"{key} {ref!r} is not in {target} (parents must "
                                                  "come first in the file)", where, rid))
            if section == "customers" and rec.get("phases") in (1, 3):
                phase = rec.get("phase")
                if rec["phases"] == 3 and phase is not None:
                    problems.append(Problem(line, "phase must be null for a three-phase customer",
                                            where, rid))
                if rec["phases"] == 1 and phase not in (0, 1, 2):
                    problems.append(Problem(line, "phase must be 0, 1 or 2 for a single-phase "
                                                  "customer", where, rid))
            for key in ("head_meter_id", "balance_meter_id", "meter_id"):
                mid = rec.get(key)
                if isinstance(mid, str):
                    if mid in meters:
                        problems.append(Problem(line, f"meter id {mid!r} is used again (first at "
                                                      f"{meters[mid]})", where, mid))
                    meters.setdefault(mid, where)
    return problems


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


def import_topology(conn: psycopg.Connection, path: str | Path) -> dict[str, int]:
    """Import (or re-import) a grid file; return how many records of each kind it holds.
    Raises TopologyValidationError listing every problem; nothing is written then."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TopologyValidationError(str(path), [Problem(exc.lineno, f"not valid JSON: {exc.msg} "
                                                  f"(column {exc.colno})", "")]) from exc
    problems = _validate(doc, element_lines(text))
    if problems:
        raise TopologyValidationError(str(path), sorted(problems, key=lambda p: (p.line or 0)))
    currency = str(doc.get("currency") or "EUR")
    regions = [{k: r[k] for k in ("region_id", "name", "substation_gateway_id", "lat", "lon")}
               for r in doc["regions"]]
    feeders = [{"feeder_id": f["feeder_id"], "region_id": f["region_id"],
                "head_meter_id": f["head_meter_id"], "length_km": f["length_km"],
                "rural": f["rural"]} for f in doc["feeders"]]
    transformers = [{k: t[k] for k in _FIELDS["transformers"] if k != "balance_meter_model"}
                    for t in doc["transformers"]]
    customers = [{"customer_id": c["customer_id"], "class": c["kind"],
                  "tariff_per_kwh": c["tariff_per_kwh"], "currency": currency,
                  "contract_kva": c.get("contract_kva"), "is_special": c["special"],
                  "has_pv": c["pv_kwp"] > 0, "pv_kwp": c["pv_kwp"],
                  "transformer_id": c["transformer_id"], "phases": c["phases"],
                  "phase": c.get("phase"), "service_m": c["service_m"], "lat": c["lat"],
                  "lon": c["lon"]} for c in doc["customers"]]
    region_gw = {r["region_id"]: r["substation_gateway_id"] for r in doc["regions"]}
    meters = [_meter(f["head_meter_id"], "feeder_head", f["head_meter_model"],
                     feeder_id=f["feeder_id"], gateway_id=region_gw[f["region_id"]],
                     unit_id=f["head_unit_id"], phases=3) for f in doc["feeders"]]
    tx_feeder = {t["transformer_id"]: t["feeder_id"] for t in doc["transformers"]}
    meters += [_meter(t["balance_meter_id"], "balance", t["balance_meter_model"],
                      transformer_id=t["transformer_id"], feeder_id=t["feeder_id"],
                      gateway_id=t["gateway_id"], unit_id=1, phases=3) for t in doc["transformers"]]
    meters += [_meter(c["meter_id"], "customer", c["meter_model"], customer_id=c["customer_id"],
                      transformer_id=c["transformer_id"], feeder_id=tx_feeder[c["transformer_id"]],
                      gateway_id=c["gateway_id"], unit_id=c["unit_id"], phases=c["phases"],
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
