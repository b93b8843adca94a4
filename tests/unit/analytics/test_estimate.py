"""The stolen energy estimated from a meter's own data (pipeline.segment_shortfall and the
suspects' `estimated_wh`): what the meter fell short of its level against its peers inside its
change-point segment. Once computed against the segment's end index instead of the readings."""

from __future__ import annotations

import numpy as np

from cloud.analytics.pipeline import stages as pipeline
from tests.unit.analytics.test_energy_only import _scenario


def test_a_meter_at_half_its_level_falls_short_by_half_inside_the_segment() -> None:
    t, block = 96, 24
    peer = np.tile(np.array([100.0, 300.0]), (2, t // 2))
    e = peer * 0.8  # at 80 % of its peers throughout...
    e[0, 48:] *= 0.5  # ...and meter 0 at half of that from block 2 on
    cp = np.array([[9.0, 0.5, 0.4, 2, 4], [0.0, 0.0, 0.8, -1, -1]])
    gap = pipeline.segment_shortfall(e, peer, cp, block)
    assert np.allclose(gap[0, :48], 0.0) and np.allclose(gap[0, 48:], 0.4 * peer[0, 48:])
    assert np.allclose(gap[1], 0.0)  # no segment, no shortfall
    e[0, 50] = np.nan  # missing is no shortfall, and never NaN in the sum
    assert pipeline.segment_shortfall(e, peer, cp, block)[0, 50] == 0.0


def test_estimated_wh_of_the_thieves_is_the_size_of_what_they_took() -> None:
    sc = _scenario()
    day = 86400 // sc.feed.step_s
    rep = pipeline.run(sc.feed, day=day, block=day // 4)
    truth = np.nansum(sc.true_kwh - sc.reported_kwh, axis=1) * 1000.0
    est = rep.suspects.estimated_wh
    found = (rep.suspects.evidence[:, 4] > 0.5) & (truth > 0)
    assert found.sum() >= 3, "the scenario must have thieves the change point finds"
    # close to the truth for most of them; the old code gave values unrelated
    # to the readings (the segment's end index times the count of intervals)
    ratio = est[found] / truth[found]
    assert 0.6 < np.median(ratio) < 1.4, ratio  # the old code: 2.2 to 3.1
    assert np.all(est[~found & (rep.suspects.raw["flags"] == 0)] == 0.0)
