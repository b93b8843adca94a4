"""The map tables: lookup, self-consistency checks, and the docs kept in sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocols.map_docs import render_map_table
from protocols.maps import MAP_NAMES, get_map
from protocols.meter_map import FieldSpec, MeterMap
from protocols.reading import MEASURED_FIELDS
from protocols.registers import DataType

DOC = Path(__file__).resolve().parents[3] / "docs" / "register-maps.md"


def test_names_are_the_published_ones():
    assert MAP_NAMES == ("sdm630", "sdm120", "em24", "sunspec203")
    for name in MAP_NAMES:
        assert get_map(name).name == name


def test_unknown_map_names_the_known_ones():
    with pytest.raises(KeyError, match="sdm630"):
        get_map("sdm630x")


@pytest.mark.parametrize("name", MAP_NAMES)
def test_fields_are_reading_fields_and_disjoint(name: str):
    m = get_map(name)
    addresses = [a for f in m.fields for a in f.addresses]
    assert len(addresses) == len(set(addresses))
    assert {f.field for f in m.fields} <= set(MEASURED_FIELDS)


def test_brief_addresses():
    sdm = get_map("sdm630")
    expected = {"v_l1": 0x00, "i_l3": 0x0A, "p_w": 0x34, "q_var": 0x3C, "pf": 0x3E,
                "freq_hz": 0x46, "import_wh": 0x48, "export_varh": 0x4E, "i_n": 0xE0}
    assert {k: sdm.spec(k).address for k in expected} == expected  # type: ignore[union-attr]
    em = get_map("em24")
    assert em.spec("i_n") is None
    assert em.spec("import_wh").address == 0x34  # type: ignore[union-attr]
    ss = get_map("sunspec203")
    assert ss.signature[40000] == 0x5375 and ss.signature[40069] == 203


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        pytest.param((FieldSpec("nope", 0, DataType.INT16, "V", (0, 1)),), "not a Reading", id="bad-field"),
        pytest.param(
            (
                FieldSpec("v_l1", 0, DataType.INT32, "V", (0, 1)),
                FieldSpec("v_l2", 1, DataType.INT16, "V", (0, 1)),
            ),
            "overlaps",
            id="overlap",
        ),
        pytest.param(
            (
                FieldSpec("v_l1", 0, DataType.INT16, "V", (0, 1)),
                FieldSpec("v_l1", 2, DataType.INT16, "V", (0, 1)),
            ),
            "twice",
            id="duplicate",
        ),
        pytest.param((FieldSpec("v_l1", 0, DataType.INT16, "V", (1, 0)),), "empty", id="empty-range"),
        pytest.param(
            (FieldSpec("v_l1", 0, DataType.INT16, "V", (0, 1), scale_factor=9),), "unlisted", id="sf"
        ),
    ],
)
def test_check_rejects_bad_maps(fields: tuple[FieldSpec, ...], match: str):
    with pytest.raises(ValueError, match=match):
        MeterMap("bad", "bad", 3, fields).check()


@pytest.mark.parametrize("name", MAP_NAMES)
def test_docs_show_the_current_table(name: str):
    assert render_map_table(get_map(name)) in DOC.read_text(encoding="utf-8")
