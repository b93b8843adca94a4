"""Fixtures of the ingest integration tests: a migrated database, and running ingestors that
share one broker but keep their own shared-subscription group."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from cloud.ingest.config import IngestConfig
from cloud.ingest.service import Ingestor
from cloud.store.migrate import migrate
from tests.conftest import ClientCert, Services


@pytest.fixture
def dsn(db_dsn: str) -> str:
    with psycopg.connect(db_dsn) as c:
        migrate(c)
    return db_dsn


@pytest.fixture
def ingestors(services: Services, dsn: str, issue_client_cert: Callable[[str], ClientCert]
              ) -> Iterator[Callable[[], Ingestor]]:
    cert = issue_client_cert("wattrail-ingestor")
    group = f"g{uuid.uuid4().hex[:8]}"  # tests share the broker; keep their groups apart
    made: list[Ingestor] = []

    def make(**kw: Any) -> Ingestor:
        ing = Ingestor(IngestConfig(dsn, services.mqtt_host, services.mqtt_port, services.ca_cert,
                                    cert.cert, cert.key, share_group=group, max_wait_s=0.05,
                                    **kw))
        ing.start()
        assert ing.connected.wait(10)
        made.append(ing)
        return ing

    yield make
    for ing in made:
        ing.stop()
