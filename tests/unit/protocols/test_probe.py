"""The word-order probe ranks the true encoding first."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.encode import encode_reading
from protocols.errors import MalformedResponse
from protocols.maps import get_map
from protocols.probe import candidates, probe_word_order
from protocols.reading import Reading

PROBED = ["sdm630", "sdm120", "em24"]


@st.composite
def grid_readings(draw: st.DrawFn) -> Reading:
    """Readings of a live meter: the probe's bands, energies anywhere."""
    v = st.floats(90, 300)
    i = st.floats(0, 100)
    return Reading(
        "m", 0, import_wh=draw(st.floats(0, 1e9)), export_wh=draw(st.floats(0, 1e9)),
        import_varh=draw(st.floats(0, 1e9)), export_varh=draw(st.floats(0, 1e9)),
        v_l1=draw(v), v_l2=draw(v), v_l3=draw(v), i_l1=draw(i), i_l2=draw(i), i_l3=draw(i),
        i_n=draw(i), p_w=draw(st.floats(-1e5, 1e5)), q_var=draw(st.floats(-1e5, 1e5)),
        pf=draw(st.floats(-1, 1)), freq_hz=draw(st.floats(45, 65)),
    )


@pytest.mark.parametrize("name", PROBED)
@settings(max_examples=60, deadline=None)
@given(reading=grid_readings())
def test_true_encoding_ranks_first(name: str, reading: Reading):
    m = get_map(name)
    regs = encode_reading(m, reading)
    words = [regs.get(a, 0) for a in range(0x50)]
    ranked = probe_word_order(words)
    top = ranked[0]
    native = m.fields[0]
    assert (top.candidate.layout, top.candidate.dtype, top.candidate.order) == (
        name, native.dtype, native.order,
    )
    assert top.candidate.scale_shift == 0
    assert top.score == 1.0
    # Every other word order or scale on the same layout scores strictly lower.
    for other in ranked[1:]:
        if other.candidate.layout == name:
            assert other.score < top.score, other.candidate.label


def test_results_explain_themselves():
    m = get_map("sdm630")
    regs = encode_reading(m, Reading("m", 0, 1, 1, 1, 1, 230, 231, 232, 1, 2, 3, 0, 10, 0, 1, 50))
    ranked = probe_word_order([regs.get(a, 0) for a in range(0x50)])
    assert len(ranked) == len(candidates())
    assert "v_l1=230 in 90..300" in ranked[0].reasons
    wrong = next(r for r in ranked if r.candidate.label == "sdm630 float32 CDAB")
    assert any("v_l1" in reason and "outside" in reason for reason in wrong.reasons)


def test_short_window_checks_only_what_it_has():
    ranked = probe_word_order([0x4366, 0x0000])  # 230.0 V as float32 ABCD, nothing else
    assert ranked[0].checked == 2 and ranked[0].passed == 2
    assert ranked[0].candidate.dtype.value == "float32"


@pytest.mark.parametrize("bad", [pytest.param(0x10000, id="17-bit"), pytest.param(-1, id="negative")])
def test_probe_rejects_non_words(bad: int):
    with pytest.raises(MalformedResponse) as info:
        probe_word_order([0, 0, bad])
    assert info.value.register == 2


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 0xFFFF), max_size=0x50))
def test_probe_never_raises_on_words(words: list[int]):
    ranked = probe_word_order(words)
    assert all(0.0 <= r.score <= 1.0 for r in ranked)
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
