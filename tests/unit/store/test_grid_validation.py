"""The grid file's checks, before any database: every value PostgreSQL or the archive would
refuse is a problem naming its record, never an exception; problem lists are capped; bytes
that are not a UTF-8 JSON grid say what they are. And a property: whatever one field of a
valid grid is replaced with, `load_grid` either accepts a value the archive can hold or
raises TopologyValidationError."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.store.errors import TopologyValidationError
from cloud.store.grid_file import MAX_DEPTH, MAX_PROBLEMS, load_grid
from firmware_sim.grid import generate_grid
from firmware_sim.grid_file import write_grid


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("grid") / "grid.json"
    write_grid(generate_grid(seed=7, meters=12, feeders=2, transformers=3), path)
    return json.loads(path.read_text())


def _problems(tmp_path: Path, data: bytes | dict[str, Any], **kw: Any) -> TopologyValidationError:
    path = tmp_path / "grid.json"
    path.write_bytes(data if isinstance(data, bytes) else json.dumps(data, indent=1).encode())
    with pytest.raises(TopologyValidationError) as info:
        load_grid(path, **kw)
    return info.value


def _with(doc: dict[str, Any], section: str, i: int, **fields: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out[section][i].update(fields)
    return out


def test_the_generated_grid_is_valid(doc: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(doc))
    assert load_grid(path)["format"] == "wattrail-grid"


@pytest.mark.parametrize(("section", "fields", "says"), [
    ("customers", {"phases": 2}, "phases must be one of 1, 3"),
    ("feeders", {"length_km": 10**400}, "length_km must be <= 10000"),
    ("customers", {"customer_id": "\ud800"}, "lone surrogate"),
    ("customers", {"customer_id": "C\x00"}, "NUL"),
    ("customers", {"tariff_per_kwh": 1e7}, "tariff_per_kwh must be <= 1000"),
    ("customers", {"kind": "martian"}, "kind must be one of 'residential', 'commercial'"),
    ("customers", {"meter_id": "M" * 201}, "at most 200 characters"),
    ("transformers", {"rating_kva": float("nan")}, "rating_kva must be"),
    ("customers", {"phase": True, "phases": 1}, "phase must be 0, 1 or 2"),
])
def test_values_the_archive_cannot_hold_are_problems(doc: dict[str, Any], tmp_path: Path,
                                                      section: str, fields: dict[str, Any],
                                                      says: str) -> None:
    exc = _problems(tmp_path, _with(doc, section, 0, **fields))
    assert any(says in p.message for p in exc.problems), exc.problems
    assert all(p.where for p in exc.problems), "every problem names its record"


def test_currency_gateway_and_unit_ids(doc: dict[str, Any], tmp_path: Path) -> None:
    bad = _with(doc, "customers", 1, unit_id=doc["customers"][0]["unit_id"],
                gateway_id=doc["customers"][0]["gateway_id"],
                transformer_id=doc["customers"][0]["transformer_id"])
    bad["currency"] = 5
    other_tx = next(t for t in doc["transformers"]
                    if t["transformer_id"] != doc["customers"][2]["transformer_id"])
    bad["customers"][2]["gateway_id"] = other_tx["gateway_id"]
    messages = " | ".join(p.message for p in _problems(tmp_path, bad).problems)
    assert "currency must be an ISO 4217 code" in messages
    assert f"is already meter {doc['customers'][0]['meter_id']!r}'s" in messages
    assert "is not its transformer's gateway" in messages


def test_a_million_empty_records_cost_a_counter(doc: dict[str, Any], tmp_path: Path) -> None:
    # each {} lacks the 4 required fields: 4 problems per record; kept: the first MAX_PROBLEMS,
    # counted: all
    bad = {**doc, "customers": [{}] * 20_000}
    exc = _problems(tmp_path, bad)
    assert len(exc.problems) == MAX_PROBLEMS
    assert exc.total >= 4 * 20_000


@pytest.mark.parametrize(("data", "kw", "says"), [
    (b"x" * 2048, {"max_bytes": 1024}, "more than the limit of 1024"),
    ('{"format": "wattrail-grid"}'.encode("utf-16"), {}, "UTF-16"),
    ('{"format": "wattrail-grïd"}'.encode("latin-1"), {}, "not UTF-8"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), {}, "nested deeper"),
    (b"[" * 100_000, {}, "nested deeper"),
    (b'{"a": 1,}', {}, "not valid JSON"),
    (b"[1, 2]", {}, "must be one JSON object"),
])
def test_bytes_that_are_not_a_grid_say_what_they_are(tmp_path: Path, data: bytes,
                                                     kw: dict[str, Any], says: str) -> None:
    exc = _problems(tmp_path, data, **kw)
    assert says in exc.problems[0].message, exc.problems


_FIELDS = ["phases", "unit_id", "tariff_per_kwh", "lat", "kind", "customer_id", "pv_kwp",
           "service_m", "special", "phase", "contract_kva", "meter_model"]
_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([10**400, -(10**400)]), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30), st.sampled_from(["\ud800", "\x00", "x" * 300]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(_FIELDS), value=_VALUES, i=st.integers(0, 11))
def test_any_value_is_accepted_only_if_the_archive_can_hold_it(
        doc: dict[str, Any], tmp_path: Path, field: str, value: Any, i: int) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(_with(doc, "customers", i, **{field: value})), "utf-8",
                    errors="surrogatepass")
    try:
        got = load_grid(path)
    except TopologyValidationError as exc:
        refused: TopologyValidationError | None = exc
    else:
        refused = None
    if refused is not None:
        assert refused.total >= 1 and refused.problems  # a reason, never an empty refusal
        return
    v = got["customers"][i].get(field)
    # what passed fits its column: finite numbers in range, text PostgreSQL can store
    if isinstance(v, float):
        assert math.isfinite(v)
    if isinstance(v, int) and not isinstance(v, bool):
        assert abs(v) < 2**53
    if isinstance(v, str):
        v.encode("utf-8")
        assert "\x00" not in v and len(v) <= 200
    if field == "phases":
        assert v in (1, 3, None)  # None: not in the archive (an MDM export may not say)
