"""The pipeline on what an MDM export has: interval kWh and a balance meter per transformer, no
export, no reactive energy, no voltages (synthetic households through wattrail.evaluation.scenarios.build)."""

from __future__ import annotations

import numpy as np

from cloud.analytics.pipeline import stages as pipeline
from tests.unit.analytics.test_observer import households
from wattrail.evaluation import scenarios as realdata


def _scenario(variant: str = "energy") -> realdata.Scenario:
    kwh = households(40, 28, seed=11) / 1000.0
    kwh[3, 100:110] = np.nan  # absent in the source: stays absent
    hh = realdata.Households([f"H{i:03d}" for i in range(40)], 1_700_000_000 // 1800 * 1800, 1800, kwh)
    return realdata.build("synthetic", 7, variant=variant, households=hh)


def test_energy_only_runs_every_indicator_it_can_and_says_which_it_cannot() -> None:
    sc = _scenario()
    rep = pipeline.run(sc.feed, day=48, block=12)
    # an absent export column is 0 for customers without PV, never NaN for the whole run
    assert np.isfinite(rep.net_wh).mean() > 0.99
    # an interval absent in the source is bridged from the registers around it: marked as an
    # estimate (quality 2) or missing (3), never as a reading
    row = sc.feed.topology.meter_ids.index("H003")  # the scenario shuffles households
    assert (rep.quality[row, 100:110] >= 2).all()
    assert (rep.quality[row, :90] == 0).all()
    notes = " | ".join(rep.notes)
    assert "bypass: needs voltage and current; not in these data" in notes
    assert "export not measured for 40 customer(s): 0 for 40 without PV" in notes
    assert "power factor 0.95" in notes
    assert np.isnan(rep.suspects.raw["bypass"]).all()  # not computed, never a 0 reading
    # technical loss, NTL and its sigma exist for every transformer
    assert np.isfinite(rep.ntl_wh).all() and np.isfinite(rep.ntl_sigma_wh).all()
    has = sc.stolen_wh > 0
    err = np.abs(rep.ntl_wh[has] - sc.stolen_wh[has])
    assert (err <= np.maximum(0.10 * sc.stolen_wh[has], rep.ntl_sigma_wh[has])).mean() >= 0.75


def test_full_variant_uses_the_measured_reactive_energy() -> None:
    rep = pipeline.run(_scenario("full").feed, day=48, block=12)
    assert not any("power factor" in n for n in rep.notes)
    assert np.isfinite(rep.ntl_wh).all()
