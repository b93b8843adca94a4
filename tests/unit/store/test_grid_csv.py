"""The MDM grid CSV (cloud/store/topology_csv.py through load_grid): one row per customer
meter, no Modbus addressing; the same checks as the JSON grid, with the CSV's line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.store.errors import TopologyValidationError
from cloud.store.grid_file import load_grid
from cloud.store.topology import grid_notes

GOOD = """meter_id,transformer_id,kind,tariff_per_kwh,transformer_rating_kva,balance_meter_id,feeder_id
M1,T1,residential,0.21,100,BAL-T1,F1
M2,T1,residential,0.21,,,F1
M3,T2,commercial,0.18,50,,F1
"""


def _load(tmp_path: Path, text: str, **kw: object) -> dict:
    path = tmp_path / "grid.csv"
    path.write_text(text)
    return load_grid(path, **kw)  # type: ignore[arg-type]


def test_an_mdm_export_is_a_grid(tmp_path: Path) -> None:
    doc = _load(tmp_path, GOOD, currency="GBP")
    assert doc["currency"] == "GBP"
    assert [r["region_id"] for r in doc["regions"]] == ["default"]
    assert [t["transformer_id"] for t in doc["transformers"]] == ["T1", "T2"]
    assert doc["transformers"][0] == {"transformer_id": "T1", "feeder_id": "F1", "rating_kva": 100.0,
                                      "balance_meter_id": "BAL-T1"}
    assert [c["meter_id"] for c in doc["customers"]] == ["M1", "M2", "M3"]
    notes = " | ".join(grid_notes(doc))
    assert "2 transformer(s) without nameplate losses" in notes
    assert "1 transformer(s) without a balance meter" in notes
    assert "3 customer meter(s) without Modbus addressing" in notes


@pytest.mark.parametrize(("text", "line", "says"), [
    ("meter_id,transformer_id\nM1,T1\n", 1, "missing column(s) kind, tariff_per_kwh"),
    (GOOD.replace("0.18", "cheap"), 4, "tariff_per_kwh must be a number"),
    (GOOD.replace("commercial", "martian"), 4, "kind must be one of"),
    (GOOD.replace("M3,T2", "M1,T2"), 4, "meter id 'M1' is used again"),
    (GOOD.replace("M2,T1,residential,0.21,,", "M2,T1,residential,0.21,250,"), 3,
     "transformer_rating_kva of transformer 'T1' is 100.0 on an earlier row, 250.0 here"),
    (GOOD.replace("M3,T2,commercial,0.18,50", "M3,T2,commercial,0.18,"), 4,
     "transformer 'T2' has no transformer_rating_kva"),
    (GOOD + "M4,T1\n", 5, "2 fields, the header has 7"),
    (GOOD.replace("transformer_id,kind", "transformer_id,kind,gateway"), 1, "unknown column(s) gateway"),
])
def test_each_problem_names_its_line(tmp_path: Path, text: str, line: int, says: str) -> None:
    with pytest.raises(TopologyValidationError) as info:
        _load(tmp_path, text)
    assert any(p.line == line and says in p.message for p in info.value.problems), info.value.problems


def test_modbus_addressing_is_all_or_nothing_in_the_json_grid(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text('{"format": "wattrail-grid", "version": 1, "regions": [{"region_id": "R", "name": "R"}],'
                    ' "feeders": [{"feeder_id": "F", "region_id": "R"}],'
                    ' "transformers": [{"transformer_id": "T", "feeder_id": "F", "rating_kva": 100}],'
                    ' "customers": [{"meter_id": "M", "transformer_id": "T", "kind": "residential",'
                    ' "tariff_per_kwh": 0.2, "unit_id": 5}]}')
    with pytest.raises(TopologyValidationError) as info:
        load_grid(path)
    assert any("unit_id without gateway_id" in p.message for p in info.value.problems)
