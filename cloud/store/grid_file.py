"""`load_grid`: read and check a grid file (docs/grid-file.md) without touching the database.

Every record is checked and all problems are reported together, each with its JSON position
and line: the bytes (size, encoding, nesting), the syntax, and each record's fields,
references, gateways and unit ids. Keys the archive does not know are ignored (the format
allows new optional keys). Writing a checked document is cloud/store/topology.py.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloud.store.errors import Problem, TopologyValidationError
from cloud.store.json_lines import element_lines
from cloud.store.topology_csv import grid_from_csv
from protocols.maps import MAP_NAMES

FORMAT, VERSION = "wattrail-grid", 1
SECTIONS = ("regions", "feeders", "transformers", "customers")

Check = Callable[[Any], str | None]  # returns what is wrong, or None


MAX_TEXT = 200  # characters in an id or a name
MAX_GRID_BYTES = 256 * 1024 * 1024  # a file; `wattrail topology import --max-bytes` changes it
MAX_PROBLEMS = 1000  # listed with their details; the total is always counted
MAX_DEPTH = 64  # JSON nesting; the format needs 3


def _text(v: Any) -> str | None:
    """A string PostgreSQL can hold and a person can read: no NUL, no lone surrogate."""
    if not isinstance(v, str) or not v.strip():
        return "must be a non-empty string"
    if len(v) > MAX_TEXT:
        return f"must be at most {MAX_TEXT} characters"
    if "\x00" in v:
        return "must not contain a NUL character"
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (it holds a lone surrogate)"
    return None


_str = _text


def _num(lo: float, hi: float, strict_lo: bool = False) -> Check:
    # `hi` always: an int like 10**400 compares fine but cannot become a float8
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return "must be a number"
        if isinstance(v, float) and not math.isfinite(v):
            return "must be a finite number"
        if v <= lo if strict_lo else v < lo:
            return f"must be {'>' if strict_lo else '>='} {lo:g}"
        if v > hi:
            return f"must be <= {hi:g}"
        return None
    return check


def _int(lo: int, hi: int) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
        return None if ok else f"must be an integer {lo}..{hi}"
    return check


def _one_of(*allowed: Any) -> Check:
    def check(v: Any) -> str | None:
        ok = not isinstance(v, bool) and any(type(v) is type(a) and v == a for a in allowed)
        return None if ok else f"must be one of {', '.join(repr(a) for a in allowed)}"
    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _model(v: Any) -> str | None:
    return None if v in MAP_NAMES else f"must be one of {', '.join(MAP_NAMES)}"


CUSTOMER_KINDS = ("residential", "commercial", "industrial")
_KM, _W, _KVA = _num(0, 10_000), _num(0, 1e7), _num(0, 1e6, strict_lo=True)
_LAT, _LON = _num(-90, 90), _num(-180, 180)
# What a meter-data-management export has: the hierarchy, ratings and tariffs. Everything the
# edge needs to reach a meter over Modbus (gateways, unit ids, register maps) is optional: an
# MDM user has none of it, and only the edge agents' configuration uses it.
_FIELDS: dict[str, dict[str, Check]] = {
    "regions": {"region_id": _str, "name": _str},
    "feeders": {"feeder_id": _str, "region_id": _str},
    "transformers": {"transformer_id": _str, "feeder_id": _str, "rating_kva": _KVA},
    "customers": {"meter_id": _str, "transformer_id": _str, "kind": _one_of(*CUSTOMER_KINDS),
                  # numeric(12, 6) holds < 10^6; 1000 a kWh is already no real tariff
                  "tariff_per_kwh": _num(0, 1000)},
}
_OPTIONAL: dict[str, dict[str, Check]] = {
    "regions": {"substation_gateway_id": _str, "lat": _LAT, "lon": _LON},
    "feeders": {"head_meter_id": _str, "head_meter_model": _model, "head_unit_id": _int(1, 247),
                "length_km": _KM, "rural": _bool},
    "transformers": {"gateway_id": _str, "balance_meter_id": _str, "balance_meter_model": _model,
                     "no_load_loss_w": _W, "load_loss_w": _W, "distance_km": _KM, "lat": _LAT,
                     "lon": _LON},
    "customers": {"customer_id": _str, "special": _bool, "gateway_id": _str,
                  "unit_id": _int(2, 247), "meter_model": _model, "phases": _one_of(1, 3),
                  "pv_kwp": _num(0, 1e6), "service_m": _num(0, 100_000), "lat": _LAT, "lon": _LON,
                  "contract_kva": _KVA, "serial": _str},
}
# keys that only make sense together (Modbus addressing): all of a group or none
_TOGETHER: dict[str, tuple[tuple[str, ...], ...]] = {
    "feeders": (("head_unit_id", "head_meter_id"),),
    "customers": (("gateway_id", "unit_id"),),
}
_ID = {"regions": "region_id", "feeders": "feeder_id", "transformers": "transformer_id",
       "customers": "customer_id"}
_REFS = {"feeders": ("region_id", "regions"), "transformers": ("feeder_id", "feeders"),
         "customers": ("transformer_id", "transformers")}


class _Problems:
    """The first MAX_PROBLEMS problems with their details, and the count of all: a file of a
    million empty records costs a counter, not a million messages (and gigabytes)."""

    def __init__(self) -> None:
        self.items: list[Problem] = []
        self.total = 0

    def add(self, line: int | None, message: str, where: str, key: Any = None) -> None:
        self.total += 1
        if len(self.items) < MAX_PROBLEMS:
            # the key goes out verbatim (JSON, a terminal): only if it is clean text itself
            ok = isinstance(key, str) and _text(key) is None
            self.items.append(Problem(line, message, where, key if ok else None))


def _shown(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _validate(doc: Any, lines: dict[str, list[int]]) -> _Problems:
    problems = _Problems()
    if not isinstance(doc, dict):
        problems.add(1, "the grid file must be one JSON object", "")
        return problems
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        problems.add(None, f"not a {FORMAT} v{VERSION} file (format={_shown(doc.get('format'))}, "
                           f"version={_shown(doc.get('version'))})", "format")
    currency = doc.get("currency")
    if currency is not None and not (isinstance(currency, str) and len(currency) == 3
                                     and currency.isascii() and currency.isupper()):
        problems.add(None, f"currency must be an ISO 4217 code such as 'EUR' (got "
                           f"{_shown(currency)})", "currency")
    ids: dict[str, set[str]] = {s: set() for s in SECTIONS}
    meters: dict[str, str] = {}  # meter id -> where it was first seen
    gateway_of: dict[str, Any] = {}  # region -> substation gateway; transformer -> its gateway
    units: dict[tuple[str, int], str] = {}  # (gateway, unit id) -> the meter that has it

    def unit(gw: Any, uid: Any, mid: Any, line: int | None, where: str) -> None:
        if not (isinstance(gw, str) and isinstance(uid, int) and not isinstance(uid, bool)):
            return
        other = units.setdefault((gw, uid), str(mid))
        if other != str(mid):
            problems.add(line, f"unit id {uid} on gateway {gw!r} is already meter {other!r}'s",
                         where, mid)

    for section in SECTIONS:
        records = doc.get(section)
        if not isinstance(records, list):
            problems.add(None, f"missing the {section!r} list", section)
            continue
        starts = lines.get(section, [])
        for i, rec in enumerate(records):
            where = f"{section}[{i}]"
            line = starts[i] if i < len(starts) else None
            if not isinstance(rec, dict):
                problems.add(line, "must be an object", where)
                continue
            rid = rec.get(_ID[section])
            if section == "customers" and rid is None:
                rid = rec.get("meter_id")  # an MDM export's account is its meter
            for group in _TOGETHER.get(section, ()):
                given = [k for k in group if rec.get(k) is not None]
                if given and len(given) < len(group):
                    missing = [k for k in group if k not in given]
                    problems.add(line, f"{', '.join(given)} without {', '.join(missing)}: give "
                                       "all of them (Modbus addressing) or none", where, rid)
            for key, check in _FIELDS[section].items():
                if key not in rec:
                    problems.add(line, f"missing {key!r}", where, rid)
                elif (msg := check(rec[key])) is not None:
                    problems.add(line, f"{key} {msg} (got {_shown(rec[key])})", where, rid)
            for key, check in _OPTIONAL.get(section, {}).items():
                if rec.get(key) is not None and (msg := check(rec[key])) is not None:
                    problems.add(line, f"{key} {msg} (got {_shown(rec[key])})", where, rid)
            if isinstance(rid, str):
                if rid in ids[section]:
                    problems.add(line, f"duplicate {_ID[section]} {rid!r}", where, rid)
                ids[section].add(rid)
            if section in _REFS:
                key, target = _REFS[section]
                ref = rec.get(key)
                if isinstance(ref, str) and ref not in ids[target]:
                    problems.add(line, f"{key} {ref!r} is not in {target} (parents must "
                                       "come first in the file)", where, rid)
            if section == "regions":
                gateway_of[f"r:{rid}"] = rec.get("substation_gateway_id")
            elif section == "feeders":
                sub = gateway_of.get(f"r:{rec.get('region_id')}")
                if rec.get("head_unit_id") is not None and sub is None:
                    problems.add(line, "head_unit_id needs the region's substation_gateway_id",
                                 where, rid)
                unit(sub, rec.get("head_unit_id"), rec.get("head_meter_id"), line, where)
            elif section == "transformers":
                gateway_of[f"t:{rid}"] = rec.get("gateway_id")
                if rec.get("balance_meter_id") is not None:
                    unit(rec.get("gateway_id"), 1, rec.get("balance_meter_id"), line, where)
            elif section == "customers":
                own = gateway_of.get(f"t:{rec.get('transformer_id')}")
                gw = rec.get("gateway_id")
                if isinstance(gw, str) and isinstance(own, str) and gw != own:
                    problems.add(line, f"gateway_id {gw!r} is not its transformer's gateway "
                                       f"{own!r}", where, rid)
                unit(gw, rec.get("unit_id"), rec.get("meter_id"), line, where)
            if section == "customers" and rec.get("phases") in (1, 3) and "phase" in rec:
                phase = rec.get("phase")
                if rec["phases"] == 3 and phase is not None:
                    problems.add(line, "phase must be null for a three-phase customer", where, rid)
                if rec["phases"] == 1 and _int(0, 2)(phase) is not None:
                    problems.add(line, "phase must be 0, 1 or 2 for a single-phase customer",
                                 where, rid)
            for key in ("head_meter_id", "balance_meter_id", "meter_id"):
                mid = rec.get(key)
                if isinstance(mid, str):
                    if mid in meters:
                        problems.add(line, f"meter id {mid!r} is used again (first at "
                                           f"{meters[mid]})", where, mid)
                    meters.setdefault(mid, where)
    return problems


def _depth_ok(text: str) -> bool:
    """No nesting deeper than MAX_DEPTH, counted on the text before json.loads recurses into it
    (brackets inside strings count too: a conservative bound)."""
    depth = 0
    for ch in re.finditer(r"[\[\]{}]", text):
        depth += 1 if ch.group() in "[{" else -1
        if depth > MAX_DEPTH:
            return False
    return True


def _read(path: Path, max_bytes: int, *, json_text: bool = True) -> str:
    size = path.stat().st_size
    if size > max_bytes:
        raise TopologyValidationError(str(path), [Problem(None, (
            f"the file is {size} bytes, more than the limit of {max_bytes}; raise it with "
            "--max-bytes if the grid really is that large"), "")])
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise TopologyValidationError(str(path), [Problem(1, "the file is UTF-16 (or holds NUL "
                                                  "bytes); save it as UTF-8", "")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TopologyValidationError(str(path), [Problem(line, (
            f"not UTF-8 (byte {exc.start}); save the file as UTF-8, e.g. "
            "`iconv -f latin1 -t utf-8`"), "")]) from exc
    if json_text and not _depth_ok(text):
        raise TopologyValidationError(str(path), [Problem(None, f"JSON nested deeper than "
                                                  f"{MAX_DEPTH} levels; a grid file needs 3", "")])
    return text


def load_grid(path: str | Path, *, max_bytes: int = MAX_GRID_BYTES,
              currency: str | None = None) -> dict[str, Any]:
    """Read and check a grid file without touching the database (pure but for the read).
    Raises TopologyValidationError with the problems: size, encoding, nesting, JSON syntax,
    and every record's fields, references, gateways and unit ids."""
    path = Path(path)
    text = _read(path, max_bytes, json_text=path.suffix.lower() != ".csv")
    if path.suffix.lower() == ".csv":  # the MDM export: one row per customer meter
        doc, lines, shape = grid_from_csv(text, currency=currency)
        problems = _Problems()
        for p in shape:
            problems.add(p.line, p.message, p.where, p.key)
        if not problems.total:
            problems = _validate(doc, lines)
        if problems.total:
            raise TopologyValidationError(str(path), sorted(problems.items, key=lambda p: p.line or 0),
                                          total=problems.total)
        return doc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TopologyValidationError(str(path), [Problem(exc.lineno, f"not valid JSON: {exc.msg} "
                                                  f"(column {exc.colno})", "")]) from exc
    problems = _validate(doc, element_lines(text) if isinstance(doc, dict) else {})
    if problems.total:
        raise TopologyValidationError(str(path), sorted(problems.items, key=lambda p: p.line or 0),
                                      total=problems.total)
    assert isinstance(doc, dict)  # _validate reports anything else
    return doc
