"""Security campaign: direct tampering in the database is flagged by `wattrail audit verify`.

A known signed set goes in through the real code paths (a real PKI and key registration, the
ingest classifier and writer, the transparency log's sequencer, two signed tree heads), and
the auditor saves the latest published head and the log's public key, as the auditor workflow
in docs/security.md says. That clean database is the template of every trial: each of the 100
trials clones it (CREATE DATABASE ... TEMPLATE), changes one thing with plain SQL, as someone
with database access but none of the keys could, then audits it as an auditor would: the real
API route (`GET /v1/audit/export`, with `known_tree_size` = the saved head's size) for each
agent, and the real `wattrail audit verify BUNDLE --ca --log-key --tree-head` on the files.
Every trial must end in exit 1 with a finding of the expected kind that names what was touched;
the untampered copy must verify with exit 0, although some envelopes sign two readings of one
meter at one instant with different values (the second is kept aside in reading_conflicts,
which is evidence, not tampering).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import typer
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from cloud.api.config import Settings
from cloud.api.main import create_app
from cloud.api.tokens import create_token
from cloud.ingest.classify import Incoming, classify
from cloud.ingest.registry import register_from_pki
from cloud.ingest.tlog import append_pending, sign_head
from cloud.ingest.writer import load_keyring, store_batch
from cloud.store.migrate import migrate
from protocols.envelope import (
    GENESIS_PREV_HASH,
    ClockStatus,
    Payload,
    encode_payload,
    encode_sign1,
    envelope_hash,
    protected_header,
    sig_structure,
)
from protocols.reading import Quality, Reading
from protocols.topics import topic
from security.audit_bundle import verify_bundle
from security.keys import key_id, load_private_key, save_private_key, sign_envelope
from security.pki import init_ca, issue_agent
from tests.conftest import Services, create_database, drop_database
from wattrail.cli import app as wattrail_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRIALS = 100
N_A, N_B, READINGS = 40, 20, 5  # envelopes of agents A and B, readings per envelope
LOGGED_FIRST = 25  # A's envelopes in the first signed head; the rest of A and B in the second
UNLOGGED_A = 2  # A's envelopes stored after the published head (not logged yet)
TWICE = 7  # envelopes with seq % 10 == TWICE sign meter m1 twice at one instant


def _twice(agent: str) -> list[int]:
    n = N_B if agent.endswith("-b") else N_A + UNLOGGED_A
    return [s for s in range(1, n + 1) if s % 10 == TWICE]


@dataclass
class World:
    template: str
    pki: Path
    log_pub: Path
    head_file: Path  # the auditor's copy of the published head, saved before any tampering
    head: dict[str, Any]
    token: str
    agents: dict[str, int]  # agent id -> envelopes stored
    logged: dict[str, int]  # agent id -> envelopes in the published head
    start: dt.datetime
    end: dt.datetime
    key_ids: dict[str, bytes] = field(default_factory=dict)
    work: str = ""  # the database each trial clones the template into (one name: one API app)
    app: FastAPI | None = None


def _readings(agent: str, seq: int, sent_at: int) -> list[Reading]:
    out = []
    for i in range(READINGS):
        v = seq * 10 + i
        out.append(Reading(
            f"{agent}-m{i}", sent_at - 500, import_wh=1000.0 + v * 0.25,
            export_wh=None if i % 2 else 5.5 + v, v_l1=229.9 + i * 0.1, v_l2=None, v_l3=231.25,
            i_l1=3.0 + i, p_w=690.5 + v, pf=0.97, freq_hz=50.01,
            status=4 if (seq + i) % 11 == 0 else 0,
            quality=Quality.STALE if (seq + i) % 13 == 0 else Quality.VALID))
    if seq % 10 == TWICE:  # the same meter and instant again, other values: kept aside
        out.append(Reading(f"{agent}-m1", sent_at - 500, import_wh=-1.0 - seq, v_l1=1.5))
    return out


def _chain(agent: str, key: Ed25519PrivateKey, n: int, base_ms: int) -> list[bytes]:
    kid, prev, out = key_id(key), GENESIS_PREV_HASH, []
    for seq in range(1, n + 1):
        sent = base_ms + seq * 1000
        p = Payload(agent, kid, seq, prev, sent, ClockStatus.SYNCED, _readings(agent, seq, sent))
        out.append(sign_envelope(key, kid, encode_payload(p)))
        prev = envelope_hash(out[-1])
    return out


def _store(conn: psycopg.Connection[Any], agent: str, envs: list[bytes]) -> None:
    ring = load_keyring(conn)
    now = int(time.time() * 1000)
    res = store_batch(conn, [classify(Incoming(topic(agent, "readings"), e, i, now), ring)
                             for i, e in enumerate(envs)])
    assert res.stored == len(envs) and not res.quarantined, res


def api_get(app: FastAPI, w: World, requests: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """GET each (path, params) from the real API app in-process, as the auditor's token; the
    lifespan (its connection pool) runs per call, so each call sees the database afresh."""

    async def run() -> list[Any]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
                out = []
                for path, params in requests:
                    res = await c.get(path, params=params, headers=_auth(w))
                    assert res.status_code == 200, res.text
                    out.append(res.json())
                return out

    return asyncio.run(run())


def _settings(w: World, dsn: str) -> Settings:
    return Settings(dsn=dsn, ca_cert=w.pki / "ca.crt", log_public_key=w.log_pub,  # type: ignore[call-arg]
                    rate_limit_per_s=10_000.0, rate_limit_burst=10_000, pool_min_size=1,
                    pool_max_size=2)


@pytest.fixture(scope="module")
def world(services: Services, template_db: str, tmp_path_factory: pytest.TempPathFactory,
          ) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("tamper")
    name = create_database(services, template_db, "t_tamper_clean")
    dsn = services.dsn_for(name)
    tag = uuid.uuid4().hex[:6]
    a, b = f"agent-tamper-{tag}-a", f"agent-tamper-{tag}-b"
    try:
        pki = tmp / "pki"
        init_ca(pki)
        keys = {ag: load_private_key(issue_agent(pki, ag).signing_key) for ag in (a, b)}
        log_key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"tamper-log").digest())
        save_private_key(log_key, tmp / "log.key")
        log_pub = tmp / "log.pub"
        log_pub.write_bytes(log_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        base_ms = int(time.time() * 1000) + 60_000  # after the certificates' notBefore
        chain_a = _chain(a, keys[a], N_A + UNLOGGED_A, base_ms)
        chain_b = _chain(b, keys[b], N_B, base_ms + 500)
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
            register_from_pki(conn, pki)
            _store(conn, a, chain_a[:LOGGED_FIRST])
            append_pending(conn)
            assert sign_head(conn, log_key) is not None
            _store(conn, a, chain_a[LOGGED_FIRST:N_A])
            _store(conn, b, chain_b)
            append_pending(conn)
            assert sign_head(conn, log_key) is not None
            _store(conn, a, chain_a[N_A:])  # stored after the published head, not logged yet
            token = create_token(conn, "auditor", "tamper campaign").secret
            kept = conn.execute("SELECT agent_id, seq FROM reading_conflicts ORDER BY 1, 2"
                                ).fetchall()
            assert kept == sorted((ag, s) for ag in (a, b) for s in _twice(ag)), kept
        w = World(template=name, pki=pki, log_pub=log_pub, head_file=tmp / "published-head.json",
                  head={}, token=token, agents={a: N_A + UNLOGGED_A, b: N_B},
                  logged={a: N_A, b: N_B},
                  start=dt.datetime.fromtimestamp(base_ms / 1000, dt.UTC) - dt.timedelta(hours=1),
                  end=dt.datetime.fromtimestamp(base_ms / 1000, dt.UTC) + dt.timedelta(hours=23),
                  key_ids={ag: key_id(k) for ag, k in keys.items()})
        # the auditor fetches and keeps the published head (what a later audit is pinned to)
        [w.head] = api_get(create_app(_settings(w, dsn)), w, [("/v1/audit/log/tree-head", {})])
        assert w.head["tree_size"] == N_A + N_B
        w.head_file.write_text(json.dumps(w.head))
        # a template must have no sessions (TimescaleDB's scheduler keeps one in each database)
        with psycopg.connect(services.dsn_admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s", [name])
        w.work = f"t_tamper_work_{tag}"
        w.app = create_app(_settings(w, services.dsn_for(w.work)))
        yield w
    finally:
        drop_database(services, f"t_tamper_work_{tag}")
        drop_database(services, name)


def fresh_copy(services: Services, w: World) -> str:
    """Replace the work database with a fresh clone of the clean one; returns its DSN."""
    drop_database(services, w.work)
    with psycopg.connect(services.dsn_admin, autocommit=True) as conn:
        for attempt in range(50):
            try:
                conn.execute(f'CREATE DATABASE "{w.work}" TEMPLATE "{w.template}"')
                break
            except psycopg.errors.ObjectInUse:  # a scheduler leaving the template (conftest)
                if attempt == 49:
                    raise
                time.sleep(0.1)
    return services.dsn_for(w.work)


def _auth(w: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {w.token}"}


TIMES: Counter[str] = Counter()  # seconds spent exporting and verifying, for the summary


@dataclass
class Audit:
    exit_codes: dict[str, int]
    kinds: Counter[str]
    findings: list[tuple[str, str, str, int | None]]  # agent, kind, detail, seq
    outputs: dict[str, str]
    notes: list[tuple[str, str, str, int | None]] = field(default_factory=list)


_CLI = typer.main.get_command(wattrail_cli)  # the `wattrail` command, built once


def audit(w: World, tmp: Path) -> Audit:
    """Export each agent's bundle through the API and verify it as the auditor would."""
    runner = CliRunner()
    codes, outs, findings, notes = {}, {}, [], []
    kinds: Counter[str] = Counter()
    params = {"start": w.start.isoformat(), "end": w.end.isoformat(),
              "known_tree_size": w.head["tree_size"]}
    t0 = time.monotonic()
    assert w.app is not None
    bundles = dict(zip(w.agents, api_get(
        w.app, w, [("/v1/audit/export", {**params, "agent_id": a}) for a in w.agents]), strict=True))
    t1 = time.monotonic()
    for agent, bundle in bundles.items():
        path = tmp / f"{agent}.json"
        path.write_text(json.dumps(bundle))
        r = runner.invoke(_CLI, ["audit", "verify", str(path), "--ca", str(w.pki / "ca.crt"),
                                 "--log-key", str(w.log_pub), "--tree-head", str(w.head_file)])
        codes[agent], outs[agent] = r.exit_code, r.output
        # the same verifier in-process, for findings as data (the CLI prints them as a table)
        rep = verify_bundle(bundle, _ca(w), _log_key(w), w.head)
        assert (r.exit_code == 1) == (not rep.ok), (r.exit_code, rep.findings, r.output)
        for f in rep.findings:
            findings.append((agent, f.kind, f.detail, f.seq))
            kinds[f.kind] += 1
        notes += [(agent, n.kind, n.detail, n.seq) for n in rep.notes]
    TIMES.update({"export": t1 - t0, "verify": time.monotonic() - t1})
    return Audit(codes, kinds, findings, outs, notes)


def _ca(w: World) -> Any:
    from cryptography import x509

    return x509.load_pem_x509_certificate((w.pki / "ca.crt").read_bytes())


def _log_key(w: World) -> Any:
    return serialization.load_pem_public_key(w.log_pub.read_bytes())


# -- the tampering kinds -------------------------------------------------------------------------
@dataclass
class Target:
    agent: str
    seq: int | None  # the seq a finding must name (None: not tied to one envelope)
    expected: set[str]  # at least one finding of one of these kinds
    what: str


Tamper = Callable[[psycopg.Connection[Any], random.Random, World], Target]


def _pick(rng: random.Random, w: World, *, logged: bool = True) -> tuple[str, int]:
    agent = rng.choice(list(w.agents))
    return agent, rng.randint(1, w.logged[agent] if logged else w.agents[agent])


def _other(w: World, agent: str) -> str:
    return next(a for a in w.agents if a != agent)


def env_raw_bitflip(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq = _pick(rng, w, logged=False)
    n = c.execute("SELECT length(raw) FROM envelopes WHERE agent_id = %s AND seq = %s",
                  [agent, seq]).fetchone()[0]  # type: ignore[index]
    pos, bit = rng.randrange(n), rng.randrange(8)
    c.execute("UPDATE envelopes SET raw = set_byte(raw, %s, get_byte(raw, %s) # %s) "
              "WHERE agent_id = %s AND seq = %s", [pos, pos, 1 << bit, agent, seq])
    return Target(agent, seq, {"digest", "signature"}, f"bit {bit} of byte {pos} flipped")


def env_raw_rehashed(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq = _pick(rng, w, logged=False)
    n = c.execute("SELECT length(raw) FROM envelopes WHERE agent_id = %s AND seq = %s",
                  [agent, seq]).fetchone()[0]  # type: ignore[index]
    pos = rng.randrange(n)
    c.execute("UPDATE envelopes SET raw = set_byte(raw, %s, get_byte(raw, %s) # 1), "
              "sha256 = sha256(set_byte(raw, %s, get_byte(raw, %s) # 1)) "
              "WHERE agent_id = %s AND seq = %s", [pos, pos, pos, pos, agent, seq])
    return Target(agent, seq, {"signature", "chain", "log", "inclusion"},
                  f"byte {pos} flipped and sha256 recomputed")


def env_delete(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq = _pick(rng, w, logged=False)
    c.execute("DELETE FROM envelopes WHERE agent_id = %s AND seq = %s", [agent, seq])
    return Target(agent, seq, {"log", "reading"}, "envelope row deleted")


def env_delete_last(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent = rng.choice(list(w.agents))
    seq = w.agents[agent]
    c.execute("DELETE FROM envelopes WHERE agent_id = %s AND seq = %s", [agent, seq])
    return Target(agent, seq, {"log", "reading"}, "the agent's last envelope deleted")


def env_move_seq(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq = _pick(rng, w, logged=False)
    c.execute("UPDATE envelopes SET seq = seq + 1000 WHERE agent_id = %s AND seq = %s",
              [agent, seq])
    return Target(agent, seq, {"chain", "log", "reading"}, "seq changed to seq+1000")


def env_move_agent(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq = _pick(rng, w, logged=False)
    c.execute("UPDATE envelopes SET agent_id = %s, seq = seq + 5000 "
              "WHERE agent_id = %s AND seq = %s", [_other(w, agent), agent, seq])
    return Target(agent, seq, {"log", "reading"}, "moved to the other agent")


def env_sent_at(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq = _pick(rng, w, logged=False)
    shift = rng.choice([-1, 1]) * rng.randint(1, 600_000)
    c.execute("UPDATE envelopes SET sent_at = sent_at + %s * interval '1 millisecond' "
              "WHERE agent_id = %s AND seq = %s", [shift, agent, seq])
    return Target(agent, seq, {"envelope"}, f"sent_at moved by {shift} ms")


def env_key_id(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq = _pick(rng, w, logged=False)
    c.execute("UPDATE envelopes SET key_id = %s WHERE agent_id = %s AND seq = %s",
              [w.key_ids[_other(w, agent)], agent, seq])
    return Target(agent, seq, {"envelope"}, "key_id column set to the other agent's key")


def env_insert_forged(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent = rng.choice(list(w.agents))
    seq = w.agents[agent] + rng.randint(1, 3)
    forger = Ed25519PrivateKey.generate()
    p = Payload(agent, w.key_ids[agent], seq, b"\x00" * 32, int(w.start.timestamp() * 1000)
                + 3_600_000 + seq * 1000, ClockStatus.SYNCED,
                _readings(agent, seq, int(w.start.timestamp() * 1000) + 3_600_000 + seq * 1000))
    protected, body = protected_header(w.key_ids[agent]), encode_payload(p)
    raw = encode_sign1(protected, body, forger.sign(sig_structure(protected, body)))  # claims A's kid
    c.execute("INSERT INTO envelopes (agent_id, seq, raw, sha256, key_id, sent_at, verdict) "
              "VALUES (%s, %s, %s, %s, %s, to_timestamp(%s / 1000.0), 'ok')",
              [agent, seq, raw, hashlib.sha256(raw).digest(), w.key_ids[agent], p.sent_at_ms])
    return Target(agent, seq, {"signature", "key"}, "forged envelope inserted")


def env_insert_copy(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, src = _pick(rng, w)
    seq = w.agents[agent] + rng.randint(1, 3)
    c.execute("INSERT INTO envelopes (agent_id, seq, raw, sha256, key_id, sent_at, verdict) "
              "SELECT agent_id, %s, raw, sha256, key_id, sent_at, 'ok' FROM envelopes "
              "WHERE agent_id = %s AND seq = %s", [seq, agent, src])
    return Target(agent, seq, {"chain"}, f"a copy of seq {src} inserted as seq {seq}")


def env_log_index(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq = _pick(rng, w)
    c.execute("UPDATE envelopes SET log_index = %s WHERE agent_id = %s AND seq = %s",
              [10_000 + rng.randrange(1000), agent, seq])
    return Target(agent, seq, {"log", "inclusion"}, "log_index changed")


def _reading_row(c: psycopg.Connection[Any], rng: random.Random, w: World,
                 ) -> tuple[str, int, str, dt.datetime]:
    agent, seq = _pick(rng, w, logged=False)
    rows = c.execute("SELECT meter_id, ts FROM readings WHERE agent_id = %s AND seq = %s "
                     "ORDER BY meter_id", [agent, seq]).fetchall()
    meter, ts = rng.choice(rows)
    return agent, seq, meter, ts


def reading_value(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq, meter, ts = _reading_row(c, rng, w)
    col, expr = rng.choice([("import_wh", "import_wh + 0.001"), ("import_wh", "import_wh * 0.5"),
                            ("v_l1", "v_l1 - 10"), ("p_w", "p_w + 1"), ("pf", "1.0"),
                            ("export_wh", "coalesce(export_wh, 0) + 1"), ("v_l2", "230.0"),
                            ("quality", "(quality + 1) % 5"), ("status", "status | 1")])
    c.execute(f"UPDATE readings SET {col} = {expr} WHERE meter_id = %s AND ts = %s", [meter, ts])
    return Target(agent, seq, {"reading"}, f"{col} of {meter} changed")


def reading_delete(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq, meter, ts = _reading_row(c, rng, w)
    c.execute("DELETE FROM readings WHERE meter_id = %s AND ts = %s", [meter, ts])
    return Target(agent, seq, {"reading"}, f"reading of {meter} deleted")


def reading_insert_forged(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq = _pick(rng, w, logged=False)
    meter = rng.choice([f"{agent}-m{rng.randrange(READINGS)}", f"{agent}-m99"])
    c.execute("INSERT INTO readings (meter_id, ts, import_wh, provenance, agent_id, seq) "
              "SELECT %s, max(ts) + interval '250 ms', 1.0, 'signed', %s, %s FROM readings "
              "WHERE agent_id = %s AND seq = %s", [meter, agent, seq, agent, seq])
    return Target(agent, seq, {"reading"}, f"forged reading of {meter} naming seq {seq}")


def reading_insert_orphan(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent = rng.choice(list(w.agents))
    seq = w.agents[agent] + rng.randint(1, 50)
    c.execute("INSERT INTO readings (meter_id, ts, import_wh, provenance, agent_id, seq) "
              "VALUES (%s, %s, 42.0, 'signed', %s, %s)",
              [f"{agent}-m0", w.start + dt.timedelta(hours=2), agent, seq])
    return Target(agent, seq, {"reading"}, f"forged reading naming unstored seq {seq}")


def reading_reattribute(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq, meter, ts = _reading_row(c, rng, w)
    other = seq % w.agents[agent] + 1
    c.execute("UPDATE readings SET seq = %s WHERE meter_id = %s AND ts = %s", [other, meter, ts])
    # the finding names the seq the row now claims, which never signed it
    return Target(agent, other, {"reading"}, f"reading of {meter} (seq {seq}) re-attributed")


def reading_move_ts(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq, meter, ts = _reading_row(c, rng, w)
    c.execute("UPDATE readings SET ts = ts + interval '100 ms' WHERE meter_id = %s AND ts = %s",
              [meter, ts])
    return Target(agent, seq, {"reading"}, f"reading of {meter} moved by 100 ms")


def reading_as_imported(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq, meter, ts = _reading_row(c, rng, w)
    c.execute("UPDATE readings SET provenance = 'imported', agent_id = NULL, seq = NULL, "
              "import_batch = 1, import_wh = import_wh + 7 WHERE meter_id = %s AND ts = %s",
              [meter, ts])
    return Target(agent, seq, {"reading"}, f"reading of {meter} relabelled imported and changed")


def _conflict_row(c: psycopg.Connection[Any], rng: random.Random, w: World) -> tuple[str, int]:
    agent = rng.choice(list(w.agents))
    return agent, rng.choice(_twice(agent))


def conflict_value(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq = _conflict_row(c, rng, w)
    c.execute("UPDATE reading_conflicts SET import_wh = import_wh - 1 "
              "WHERE agent_id = %s AND seq = %s", [agent, seq])
    return Target(agent, seq, {"reading"}, "kept-aside reading's value changed")


def conflict_delete(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent, seq = _conflict_row(c, rng, w)
    c.execute("DELETE FROM reading_conflicts WHERE agent_id = %s AND seq = %s", [agent, seq])
    return Target(agent, seq, {"reading"}, "kept-aside reading deleted")


def leaf_update(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    idx = rng.randrange(w.head["tree_size"])
    agent, _seq = c.execute("SELECT agent_id, seq FROM tlog_leaves WHERE idx = %s",
                           [idx]).fetchone()  # type: ignore[misc]
    c.execute("UPDATE tlog_leaves SET leaf_hash = sha256(leaf_hash) WHERE idx = %s", [idx])
    return Target(agent, None, {"inclusion", "log", "consistency"}, f"leaf {idx} rewritten")


def leaf_delete(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    idx = rng.randrange(w.head["tree_size"])
    agent, _seq = c.execute("SELECT agent_id, seq FROM tlog_leaves WHERE idx = %s",
                           [idx]).fetchone()  # type: ignore[misc]
    c.execute("DELETE FROM tlog_leaves WHERE idx = %s", [idx])
    return Target(agent, None, {"log", "inclusion", "consistency"}, f"leaf {idx} deleted")


def head_delete(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    c.execute("DELETE FROM tlog_tree_heads WHERE tree_size = %s", [w.head["tree_size"]])
    return Target(rng.choice(list(w.agents)), None, {"consistency"}, "published head deleted")


def head_forge(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    col = rng.choice(["root_hash", "signature"])
    c.execute(f"UPDATE tlog_tree_heads SET {col} = set_byte({col}, 0, get_byte({col}, 0) # 1) "
              "WHERE tree_size = %s", [w.head["tree_size"]])
    return Target(rng.choice(list(w.agents)), None, {"tree_head", "consistency"},
                  f"published head's {col} altered")


def key_revoked(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent = rng.choice(list(w.agents))
    c.execute("UPDATE agent_keys SET revoked_at = %s WHERE agent_id = %s",
              [w.start + dt.timedelta(hours=1), agent])
    return Target(agent, None, {"key"}, "key marked revoked before it signed")


def key_certificate_swap(c: psycopg.Connection[Any], rng: random.Random, w: World) -> Target:
    agent = rng.choice(list(w.agents))
    c.execute("UPDATE agent_keys SET certificate_pem = (SELECT certificate_pem FROM agent_keys "
              "WHERE agent_id = %s) WHERE agent_id = %s", [_other(w, agent), agent])
    return Target(agent, None, {"certificate", "key"}, "key certificate swapped")


KINDS: list[Tamper] = [
    env_raw_bitflip, env_raw_rehashed, env_delete, env_delete_last, env_move_seq, env_move_agent,
    env_sent_at, env_key_id, env_insert_forged, env_insert_copy, env_log_index, reading_value,
    reading_delete, reading_insert_forged, reading_insert_orphan, reading_reattribute,
    reading_move_ts, reading_as_imported, conflict_value, conflict_delete, leaf_update,
    leaf_delete, head_delete, head_forge, key_revoked, key_certificate_swap,
]


def test_untampered_copy_verifies(world: World, services: Services, tmp_path: Path) -> None:
    fresh_copy(services, world)
    res = audit(world, tmp_path)
    assert res.exit_codes == dict.fromkeys(world.agents, 0), res.outputs
    assert res.findings == []
    # the second readings of m1 are notes, not findings
    assert sorted((a, s) for a, kind, detail, s in res.notes
                  if kind == "reading" and "kept in reading_conflicts" in detail) \
        == sorted((a, s) for a in world.agents for s in _twice(a)), res.notes
    for out in res.outputs.values():
        assert "OK" in out and "pinned tree head" in out


def test_every_tampering_is_flagged(world: World, services: Services, tmp_path: Path) -> None:
    rng = random.Random(20261127)
    flagged: Counter[str] = Counter()
    misses: list[str] = []
    started = time.monotonic()
    phases: Counter[str] = Counter()
    TIMES.clear()
    for n in range(TRIALS):
        tamper = KINDS[n % len(KINDS)]
        t0 = time.monotonic()
        dsn = fresh_copy(services, world)  # drops the previous trial's copy first
        t1 = time.monotonic()
        with psycopg.connect(dsn, autocommit=True) as conn:
            target = tamper(conn, rng, world)
        t2 = time.monotonic()
        res = audit(world, tmp_path)
        phases.update({"clone": t1 - t0, "tamper": t2 - t1})
        label = f"#{n} {tamper.__name__} ({target.agent} seq {target.seq}: {target.what})"
        if not any(code == 1 for code in res.exit_codes.values()):
            misses.append(f"{label}: not flagged, exit codes {res.exit_codes}")
            continue
        named = [f for f in res.findings if f[1] in target.expected
                 and (target.seq is None or (f[0] == target.agent and f[3] == target.seq))]
        if not named:
            misses.append(f"{label}: findings {res.findings[:6]} name none of {target.expected}")
            continue
        flagged[tamper.__name__] += 1
    took = time.monotonic() - started
    print(f"\n{sum(flagged.values())}/{TRIALS} tampering trials flagged in {took:.1f} s: "
          f"{dict(flagged)}; seconds by phase: { {k: round(v, 1) for k, v in (phases + TIMES).items()} }")
    assert misses == [], "\n".join(misses)
    assert sum(flagged.values()) == TRIALS and set(flagged) == {k.__name__ for k in KINDS}
