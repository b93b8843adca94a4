"""One seeded database and one real uvicorn server per test module (the API only reads, and
the few writes, tokens and topology import, are idempotent or use fresh names), so the
hundreds of auth-matrix requests cost milliseconds each, not a database each."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization

from cloud.api.config import Settings
from cloud.api.main import create_app
from tests.conftest import Services, create_database, drop_database
from tests.integration.api.seed import Seed, seed
from tests.support.api_server import serve_api


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


@pytest.fixture(scope="module")
def server(seeded: Seed) -> Iterator[str]:
    """The API on a free loopback port in a thread; yields its base URL."""
    with serve_api(create_app(settings_for(seeded))) as base:
        yield base


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
