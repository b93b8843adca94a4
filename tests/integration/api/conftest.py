"""One seeded database and one real uvicorn server per test module (the API only reads, and
the few writes, tokens and topology import, are idempotent or use fresh names), so the
hundreds of auth-matrix requests cost milliseconds each, not a database each."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization

from cloud.api.config import Settings
from cloud.api.main import create_app
from tests.conftest import Services, create_database, drop_database
from tests.integration.api.seed import Seed, seed


@pytest.fixture(scope="module")
def seeded(services: Services, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seed]:
    name = create_database(services, template_db, "t_api")
    dsn = services.dsn_for(name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            yield seed(conn, dsn, tmp_path_factory.mktemp("api"))
    finally:
        drop_database(services, name)


def settings_for(s: Seed, **over: object) -> Settings:
    log_pub = s.pki / "log.pub"
    log_pub.write_bytes(
        s.log_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    values: dict[str, object] = {
        "dsn": s.dsn,
        "ca_cert": s.pki / "ca.crt",
        "log_public_key": log_pub,
        "rate_limit_per_s": 10_000.0,
        "rate_limit_burst": 10_000,
        **over,
    }
    return Settings(**values)  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(seeded: Seed) -> Iterator[str]:
    """The API on a free loopback port in a thread; yields its base URL."""
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings_for(seeded)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ws="none",
        access_log=False,
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, name="api-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the API server did not start")
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    try:
        # the pool opens in the background: wait until the database answers
        while httpx.get(f"{base}/healthz").status_code != 200:
            if time.monotonic() > deadline:
                pytest.fail("the API never reached the database")
            time.sleep(0.05)
        yield base
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
