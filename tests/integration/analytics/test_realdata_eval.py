"""The real-data evaluation at a small seed count (bench/eval_realdata.py runs 20 seeds per
dataset): Wattrail's ranking beats the analyst's baselines on real households, and its NTL
is within 10 % of the stolen energy or within its sigma. Skips, saying why, without the data."""

from __future__ import annotations

import numpy as np
import pytest

from wattrail.evaluation import realdata as evaluate_real
from wattrail.evaluation import scenarios as realdata

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("dataset", ["lcl", "sgsc"])
def test_the_ranking_beats_the_baselines_on_real_households(dataset: str) -> None:
    try:
        hh = realdata.load(dataset)
    except realdata.RealDataMissing as exc:
        pytest.skip(str(exc))
    results = [evaluate_real.evaluate(realdata.build(dataset, seed, households=hh))
               for seed in (7001, 7002, 7003)]
    s = evaluate_real.summarise(results)
    auc = {m: s["table"][m]["any"]["auc"] for m in evaluate_real.METHODS}
    map10 = {m: s["table"][m]["any"]["map10"] for m in evaluate_real.METHODS}
    assert auc["wattrail"] > max(auc["drop_ratio"], auc["peer_median"]) + 0.05, auc
    assert map10["wattrail"] > max(map10["drop_ratio"], map10["peer_median"]), map10
    assert auc["wattrail"] >= 0.85, auc
    assert s["ntl_within"] >= 0.8, s["ntl_within"]
    # the shape attacks no energy ratio can see are found
    for kind in ("h5", "h6", "flat_mean"):
        assert s["table"]["wattrail"][kind]["auc"] > s["table"]["drop_ratio"][kind]["auc"], kind
    assert all(np.isfinite(r["metrics"]["wattrail"]["any"]["auc"]) for r in results)
