"""A small but complete Wattrail database for the API tests, filled through the real code paths:
topology import, a real PKI and key registration, signed envelopes classified and stored by the
ingest writer, the transparency log with two signed heads, rollups, tokens of every role, and
one analysis run's result rows (written with SQL: the analytics pipeline has tests of its own).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.api.tokens import create_token, revoke_token
from cloud.ingest.classify import Incoming, classify
from cloud.ingest.registry import register_from_pki
from cloud.ingest.tlog import append_pending, sign_head
from cloud.ingest.writer import load_keyring, store_batch
from cloud.store.migrate import migrate
from cloud.store.rollups import refresh_rollups
from cloud.store.topology import import_topology
from firmware_sim.grid import generate_grid
from firmware_sim.grid_file import grid_to_dict, write_grid
from security.keys import load_private_key, save_private_key
from security.pki import init_ca, issue_agent
from tests.unit.security.envelopes import Agent

AGENT = "agent-api-1"
ROLES = ("engineer", "auditor", "admin")


@dataclass
class Seed:
    dsn: str
    pki: Path
    grid_doc: dict[str, Any]
    region_id: str
    feeder_id: str
    transformer_id: str
    meter_id: str  # a customer meter with signed readings
    customer_id: str
    agent_id: str
    envelopes: dict[int, bytes]  # seq -> raw bytes as stored
    reading_ts: dict[int, datetime]  # seq -> ts of the one reading it carries
    start: datetime  # before every reading
    end: datetime  # after every reading
    heads: list[int]  # signed tree sizes, ascending
    log_key: Ed25519PrivateKey
    quarantine_id: int
    run_id: int
    tokens: dict[str, str] = field(default_factory=dict)  # role -> secret
    revoked_token: str = ""
    period: str = ""  # the local month (UTC zone) of the readings, billed once
    vee_run_id: int = 0
    billing_run_id: int = 0


def _store(conn: psycopg.Connection[Any], envs: list[bytes]) -> None:
    ring = load_keyring(conn)
    store_batch(
        conn,
        [
            classify(Incoming(f"wattrail/v1/{AGENT}/readings", e, i, int(time.time() * 1000)), ring)
            for i, e in enumerate(envs)
        ],
    )


def seed(conn: psycopg.Connection[Any], dsn: str, tmp: Path) -> Seed:
    migrate(conn)
    grid = generate_grid(seed=7, meters=12, feeders=2, transformers=3)
    write_grid(grid, tmp / "grid.json")
    import_topology(conn, tmp / "grid.json")
    customer = grid.customers[0]

    pki = tmp / "pki"
    init_ca(pki)
    creds = issue_agent(pki, AGENT)
    register_from_pki(conn, pki)
    agent = Agent(AGENT, load_private_key(creds.signing_key))
    base_ms = int(time.time() * 1000) + 60_000  # after the certificate's notBefore
    envs: dict[int, bytes] = {}
    for s in range(1, 6):
        envs[s] = agent.envelope(sent_at_ms=base_ms + s * 60_000, meter=customer.meter_id)
    _store(conn, list(envs.values()))
    log_key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    save_private_key(log_key, tmp / "log.key")
    append_pending(conn)
    first = sign_head(conn, log_key, now_ms=base_ms)
    # seqs 6 and 7 never arrive: 8 is stored as a gap
    envs[8] = agent.envelope(seq=8, sent_at_ms=base_ms + 8 * 60_000, meter=customer.meter_id)
    forged = agent.envelope(seq=9, sent_at_ms=base_ms + 9 * 60_000, meter=customer.meter_id, advance=False)
    forged = forged[:-1] + bytes([forged[-1] ^ 1])  # bad signature: quarantined
    _store(conn, [envs[8], forged])
    append_pending(conn)
    second = sign_head(conn, log_key, now_ms=base_ms + 1)
    assert first is not None and second is not None
    envs[10] = agent.envelope(seq=10, sent_at_ms=base_ms + 10 * 60_000, meter=customer.meter_id)
    _store(conn, [envs[10]])  # stored, not logged yet

    reading_ts = {s: datetime.fromtimestamp((base_ms + s * 60_000 - 500) / 1000, UTC) for s in envs}
    start = datetime.fromtimestamp(base_ms / 1000, UTC) - timedelta(hours=1)
    end = start + timedelta(days=1)
    refresh_rollups(conn, start, end)
    q = conn.execute("SELECT id FROM quarantine").fetchone()
    assert q is not None

    transformer = grid.transformers[0]
    feeder = next(f for f in grid.feeders if f.feeder_id == transformer.feeder_id)
    out = Seed(
        dsn=dsn,
        pki=pki,
        grid_doc=grid_to_dict(grid),
        region_id=feeder.region_id,
        feeder_id=feeder.feeder_id,
        transformer_id=transformer.transformer_id,
        meter_id=customer.meter_id,
        customer_id=customer.customer_id,
        agent_id=AGENT,
        envelopes=envs,
        reading_ts=reading_ts,
        start=start,
        end=end,
        heads=[first.tree_size, second.tree_size],
        log_key=log_key,
        quarantine_id=int(q[0]),
        run_id=0,
    )
    out.run_id = _analysis_run(conn, grid, start)
    # meter data management: every region in UTC, the readings' month validated and billed
    from cloud.mdm.billing import run_billing
    from cloud.store import mdm_sql

    conn.execute(mdm_sql.SET_TIME_ZONE_WHERE_NONE, {"tz": "UTC"})
    out.period = f"{start:%Y-%m}"
    bill = run_billing(conn, out.period)
    out.vee_run_id, out.billing_run_id = bill.vee.run_id, bill.run_id
    for role in ROLES:
        out.tokens[role] = create_token(conn, role, f"test {role}").secret
    revoked = create_token(conn, "admin", "revoked")
    revoke_token(conn, revoked.info.id)
    out.revoked_token = revoked.secret
    return out


def _analysis_run(conn: psycopg.Connection[Any], grid: Any, start: datetime) -> int:
    """Two runs (the API reads the latest by default); known numbers in the latest."""
    step = 900
    run_ids = []
    for k in range(2):
        row = conn.execute(
            "INSERT INTO analysis_runs (period_start, period_end, step_s, regions, started_at, finished_at,"
            " parameters, meters, transformers, feeders, expected_readings, present_readings, completeness,"
            " input_sha256, seconds) VALUES (%s, %s, %s, NULL, now(), now(), %s, %s, %s, %s, 100, 98, 0.98,"
            " %s, '{}') RETURNING run_id",
            [
                start,
                start + timedelta(days=3),
                step,
                json.dumps({"step_s": step, "k": k, "notes": ["export not measured for 3 customer(s)"],
                            "not_computed": {"bypass": "needs voltage and current; not in these data"}}),
                len(grid.customers),
                len(grid.transformers),
                len(grid.feeders),
                bytes([k]) * 32,
            ],
        ).fetchone()
        assert row is not None
        run_ids.append(int(row[0]))
    run = run_ids[-1]
    loss_sql = (
        "INSERT INTO analysis_loss (run_id, level, entity_id, energy_in_wh, energy_out_wh, loss_wh,"
        " loss_pct, technical_wh, ntl_wh, ntl_sigma_wh, completeness, low_confidence, revenue_at_risk)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )
    for i, t in enumerate(grid.transformers):
        # transformer i: 100 kWh in, loss 10 + i kWh of which 3 technical; the last has no input
        if i == len(grid.transformers) - 1:
            conn.execute(
                loss_sql,
                [
                    run,
                    "transformer",
                    t.transformer_id,
                    None,
                    90_000.0,
                    None,
                    None,
                    None,
                    None,
                    None,
                    0.2,
                    True,
                    None,
                ],
            )
            continue
        loss = 10_000.0 + 1000 * i
        conn.execute(
            loss_sql,
            [
                run,
                "transformer",
                t.transformer_id,
                100_000.0,
                100_000.0 - loss,
                loss,
                loss / 1000,
                3000.0,
                loss - 3000,
                500.0,
                0.99,
                False,
                (loss - 3000) / 1000 * 0.2,
            ],
        )
    for f in grid.feeders:
        conn.execute(
            loss_sql,
            [
                run,
                "feeder",
                f.feeder_id,
                300_000.0,
                270_000.0,
                30_000.0,
                10.0,
                9000.0,
                20_000.0,
                900.0,
                0.98,
                False,
                4.0,
            ],
        )
    for r in grid.regions:
        conn.execute(
            loss_sql,
            [
                run,
                "region",
                r.region_id,
                600_000.0,
                540_000.0,
                60_000.0,
                10.0,
                18000.0,
                40_000.0,
                1300.0,
                0.98,
                False,
                8.0,
            ],
        )
    t0 = grid.transformers[0].transformer_id
    for k in range(8):  # two hours of 15-min intervals for transformer 0
        conn.execute(
            "INSERT INTO analysis_loss_intervals (run_id, level, entity_id, interval_start, energy_in_wh,"
            " energy_out_wh, loss_wh, loss_pct, technical_wh, ntl_wh, ntl_sigma_wh, completeness,"
            " low_confidence, revenue_at_risk) VALUES (%s, 'transformer', %s, %s, 1000, 900, 100, 10, 30,"
            " 70, 5, 1.0, false, 0.01)",
            [run, t0, start + timedelta(seconds=step * k)],
        )
    for rank, c in enumerate(grid.customers, start=1):
        score = max(0.0, 0.95 - 0.1 * (rank - 1))
        conn.execute(
            "INSERT INTO analysis_suspects (run_id, meter_id, transformer_id, rank, score, estimated_wh,"
            " allocated_wh, evidence) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                run,
                c.meter_id,
                c.transformer_id,
                rank,
                score,
                1000.0 * score,
                500.0 * score,
                json.dumps(
                    {
                        "strongest": "bypass" if score else None,
                        "evidence": {"bypass": score, "flags": 0.0},
                        "indicators": {"bypass": score / 2},
                        "period": {"from": start.isoformat(), "to": (start + timedelta(hours=6)).isoformat()},
                    }
                ),
            ],
        )
    conn.execute(
        "INSERT INTO analysis_power_quality (run_id, kind, level, entity_id, value, intervals, started_at,"
        " ended_at, details) VALUES (%s, 'overload', 'transformer', %s, 1.3, 4, %s, %s, '{}'),"
        " (%s, 'voltage', 'meter', %s, 0.25, NULL, NULL, NULL, '{\"v_min\": 198.5}')",
        [run, t0, start, start + timedelta(hours=1), run, grid.customers[0].meter_id],
    )
    conn.execute(
        "INSERT INTO analysis_outages (run_id, level, entity_id, started_at, ended_at, instants)"
        " VALUES (%s, 'transformer', %s, %s, %s, 4), (%s, 'feeder', %s, %s, NULL, 2)",
        [
            run,
            t0,
            start,
            start + timedelta(hours=1),
            run,
            grid.feeders[0].feeder_id,
            start + timedelta(hours=2),
        ],
    )
    for r in grid.regions:
        conn.execute(
            "INSERT INTO analysis_regions (run_id, region_id, energy_wh, peak_interval_wh, peak_at, daily_wh,"
            " profile_wh, forecast_wh, holdout_mae_wh, holdout_mape_pct) VALUES (%s, %s, 540000, 900, %s,"
            " %s, %s, %s, 12.5, 4.2)",
            [run, r.region_id, start, [180_000.0, 180_000.0, 180_000.0], [10.0] * 96, [20.0] * 96],
        )
    return run
