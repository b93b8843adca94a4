"""The connectivity check's energy test on real households at three seeds (bench/eval_archive.py
runs five): on an honest grid every mis-association is found with its true transformer and no
correct meter is flagged; with thieves no thief is taken for a mislabelled meter. Skips, saying
why, without the data."""

from __future__ import annotations

import pytest

from wattrail.evaluation import archive_real, scenarios

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("dataset", ["lcl", "sgsc"])
def test_energy_connectivity_on_real_households(dataset: str) -> None:
    try:
        scenarios.load(dataset)
    except scenarios.RealDataMissing as exc:
        pytest.skip(str(exc))
    rep = archive_real.run([6001, 6002, 6003], datasets=(dataset,), say=lambda _s: None)
    honest = rep["cells"][f"{dataset}/7d"]
    assert honest["injected"] >= 3
    assert honest["tp"] >= honest["injected"] - 1 and honest["fix_right"] == honest["tp"]
    assert honest["correct_flagged"] == 0
    assert honest["within_after"] > honest["within_before"]
    for cond in ("7d-thieves", "42d-thieves"):
        c = rep["cells"][f"{dataset}/{cond}"]
        assert c["thieves_flagged"] == 0 and c["correct_flagged"] == 0, (cond, c)
