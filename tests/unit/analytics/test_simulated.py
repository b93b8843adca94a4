"""The pipeline on small simulated grids: conservation, one thief per type, an outage."""

from __future__ import annotations

import numpy as np
import pytest

from cloud.analytics.pipeline import stages as pipeline
from cloud.analytics.pipeline.score import INDICATOR_NAMES
from cloud.analytics.pipeline.stages import Report
from firmware_sim.grid import generate_grid
from firmware_sim.grid_service import DEFAULT_START_S, build_simulation
from firmware_sim.simulation import Simulation
from firmware_sim.theft import DAY_MIN, TheftEvent, TheftPlan
from firmware_sim.truth import build_truth
from wattrail import simfeed

STEP = 900
PER_DAY = 86400 // STEP

# theft type -> (indicator that must single the thief out, parameters)
CASES: dict[str, tuple[str, dict[str, float]]] = {
    "bypass": ("bypass", {}),
    "neutral": ("neutral", {"a": 0.4}),
    "reversed_ct": ("export_no_pv", {"share": 1.0}),
    "magnetic": ("flags", {"a": 0.4}),
    "cover_open": ("flags", {}),
    "rollback": ("flags", {"days": 20.0}),
    "h1": ("change_point", {"a": 0.3}),
    "h2": ("bypass", {"window_start": 1020.0, "window_len": 300.0}),
    "h3": ("localisation", {}),
    "h4": ("peer_dev", {}),
    "h5": ("peer_dev", {}),
    "h6": ("peer_dev", {}),
}


def test_conservation_on_theft_free_grid() -> None:
    sim = build_simulation(meters=120, seed=5, transformers=2, feeders=1, theft_rate=0.0)
    rep = pipeline.run(simfeed.sample(sim, STEP, 2 * PER_DAY + 1))
    truth = build_truth(sim)
    tech_true = np.array([t["technical_loss_wh"] for t in truth["transformers"]])
    # the balance closes: balance - customers = technical loss, exactly as the simulator integrated it
    np.testing.assert_allclose(rep.balance.period_loss_wh, tech_true, rtol=1e-6)
    assert (rep.balance.period_completeness == 1.0).all()
    # the loss model explains it: NTL ~ 0 within its uncertainty, technical loss within 3 %
    assert (np.abs(rep.ntl_wh) <= 2 * rep.ntl_sigma_wh).all()
    np.testing.assert_allclose(rep.technical_wh.sum(1), tech_true, rtol=0.03)
    assert (rep.revenue_at_risk < 1.0).all()  # under a euro, from model error alone


@pytest.fixture(scope="module")
def one_thief_per_type() -> tuple[Report, dict[str, int], np.ndarray]:
    grid = generate_grid(seed=11, meters=70, feeders=1, transformers=1)
    candidates = [
        i for i, c in enumerate(grid.customers) if c.kind == "residential" and c.pv_kwp == 0 and c.phases == 1
    ]
    start_min = int(DEFAULT_START_S // 60)
    events, who = [], {}
    for (kind, (_, params)), c in zip(CASES.items(), candidates, strict=False):
        length = 1 if kind == "rollback" else int(1.5 * DAY_MIN)
        s = start_min + int(1.5 * DAY_MIN)
        events.append(TheftEvent(c, grid.customers[c].meter_id, kind, s, s + length, params))
        who[kind] = c
    sim = Simulation(grid, DEFAULT_START_S, TheftPlan(grid.seed, events))
    rep = pipeline.run(simfeed.sample(sim, STEP, 4 * PER_DAY + 1))
    honest = np.ones(len(grid.customers), bool)
    honest[list(who.values())] = False
    return rep, who, honest


@pytest.mark.parametrize("kind", list(CASES))
def test_each_theft_type_raises_its_indicator(
    one_thief_per_type: tuple[Report, dict[str, int], np.ndarray], kind: str
) -> None:
    rep, who, honest = one_thief_per_type
    name = CASES[kind][0]
    col = INDICATOR_NAMES.index(name)
    ev = rep.suspects.evidence[:, col]  # the indicator as the score sees it (raw value through its ramp)
    thief = who[kind]
    assert ev[thief] > ev[honest].max(), (
        f"{kind}: {name} evidence {ev[thief]:.3f} vs honest max {ev[honest].max():.3f}"
    )
    # and the combined score puts the thief above 90 % of the honest meters
    assert rep.suspects.score[thief] > np.quantile(rep.suspects.score[honest], 0.9)
    assert rep.suspects.period[thief, 0] >= 0  # evidence comes with the period it was seen in


def test_outage_is_detected_and_localised() -> None:
    sim = build_simulation(meters=80, seed=3, transformers=4, feeders=2, theft_rate=0.0)
    feed = simfeed.sample(sim, STEP, 49)
    c, topo = feed.customers, feed.topology
    # the simulator has no outage model: blank what meters behind a dead transformer would show
    tx0 = topo.tx_of == 0
    c.present[tx0, 10:20] = False
    c.v[tx0, 30:33] = 0.0  # answering (battery-backed comms) but no voltage
    feeder1_txs = np.flatnonzero(topo.feeder_of_tx == 1)
    on_f1 = np.isin(topo.tx_of, feeder1_txs)
    c.present[on_f1, 40:44] = False
    c.present[3 if not tx0[3] else 4, 25] = False  # one silent meter is a comms fault, not an outage
    simfeed.blank_missing(c)
    events = sorted(pipeline.run(feed).outages.events)
    assert events == [("feeder", 1, 40, 44), ("transformer", 0, 10, 20), ("transformer", 0, 30, 33)]


def test_no_stored_row_is_unknown_not_an_outage() -> None:
    # A late start (or the window's edge, or an import with a hole) leaves instants with no row
    # at all, everywhere at once: nothing says the supply failed. Asked-and-silent meters (rows
    # stored as COMMS_LOST: polled but not present) at the same instants are an outage.
    sim = build_simulation(meters=80, seed=3, transformers=4, feeders=2, theft_rate=0.0)
    feed = simfeed.sample(sim, STEP, 49)
    c = feed.customers
    c.present[:, 0:3] = False
    c.polled[:, 0:3] = False
    simfeed.blank_missing(c)
    assert pipeline.run(feed).outages.events == []
    c.polled[:, 0:3] = True  # the agents asked and nobody answered: every feeder is out
    events = sorted(pipeline.run(feed).outages.events)
    assert events == [("feeder", 0, 0, 3), ("feeder", 1, 0, 3)]


def test_missing_start_of_window_is_not_theft_evidence() -> None:
    # One transformer's customers have no readings for the window's first six hours (its agent
    # started late) while its balance meter reads: that looks like 6 h of total loss. Honest
    # meters must not be localised to it.
    sim = build_simulation(meters=120, seed=5, transformers=2, feeders=1, theft_rate=0.0)
    feed = simfeed.sample(sim, STEP, 2 * PER_DAY + 1)
    c, topo = feed.customers, feed.topology
    late = topo.tx_of == 0
    c.present[late, :25] = False
    c.polled[late, :25] = False
    simfeed.blank_missing(c)
    rep = pipeline.run(feed)
    loc = rep.suspects.raw["localisation"][late]
    assert np.nanmax(loc) < 0.5, f"honest meters correlated with a data gap: {np.sort(loc)[-5:]}"
    assert rep.suspects.score[late].max() < 0.5
    assert rep.outages.events == []


def test_readings_taken_off_their_instant_move_no_energy() -> None:
    # A constant 2 kW load read at random times up to 7 minutes either side of each 15-minute
    # instant (a poll cycle that ran late, a meter clock that drifts): every interval inside
    # the window is still exactly 500 Wh, because registers are interpolated from when they
    # were read. Treated as read at the instant, intervals would be off by up to 2 x 233 Wh.
    from cloud.analytics.pipeline.feed import empty_arrays

    k, p_w = 40, 2000.0
    rng = np.random.default_rng(4)
    arr = empty_arrays(3, k)
    arr.offset_s[:] = rng.integers(-420, 421, size=(3, k))
    t0 = int(DEFAULT_START_S)
    read_at = t0 + np.arange(k)[None, :] * STEP + arr.offset_s
    arr.import_wh[:] = 1_000.0 + p_w * (read_at - t0) / 3600.0
    arr.present[:] = arr.polled[:] = True
    feed = simfeed.sample(build_simulation(meters=20, seed=1, transformers=1, feeders=1), STEP, 2)
    feed.t0_s, feed.step_s = t0, STEP
    energy, quality, _ = pipeline.intervals(arr, arr.import_wh, feed)
    np.testing.assert_allclose(energy[:, 1:-1], p_w * STEP / 3600.0, rtol=1e-12)
    # the edges: the first interval is covered from the first reading on, which is VALID when
    # the reading is within the jitter tolerance and ESTIMATED (scaled up) beyond it
    assert set(np.unique(quality)) <= {0, 2}
