"""Property-based run over the OpenAPI document: generated requests (valid and invalid) to a
selection of endpoints must never get a 5xx, and every response must match the schema the
API publishes (status codes, content types, bodies, headers). Bounded: a few dozen examples
per operation, well under a minute."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from cloud.api.config import Settings
from cloud.api.main import create_app
from tests.integration.api.conftest import auth
from tests.integration.api.seed import Seed

pytestmark = pytest.mark.integration

# the document is the one the server publishes; building it needs no database
schema = schemathesis.openapi.from_dict(create_app(Settings(dsn="postgresql://unused/unused")).openapi())
FUZZED = schema.include(
    path_regex=r"^/v1/(regions|customers|meters/\{meter_id\}/readings|map/customers|loss"
    r"|suspects|audit/(quarantine|log/consistency|envelopes/\{agent_id\}/\{seq\}/inclusion"
    r"|reading|export))$"
)


@pytest.fixture(scope="module")
def base_url(server: str) -> str:
    return server


@FUZZED.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors_and_schema_holds(case: schemathesis.Case, base_url: str, seeded: Seed) -> None:
    headers = auth(seeded.tokens["admin"])
    response = case.call(base_url=base_url, headers=headers)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )
    # positive_data_acceptance is left out: some rules span parameters (end after start, first
    # <= second) or depend on server state (a cursor this server issued), which OpenAPI cannot
    # say, so a schema-valid request may rightly get a 4xx problem. Everything else is checked.
    case.validate_response(
        response, headers=headers, excluded_checks=[schemathesis.checks.positive_data_acceptance]
    )


def test_the_fuzzed_selection_is_not_empty() -> None:
    labels = sorted(op.ok().label for op in FUZZED.get_all_operations())
    assert len(labels) == 11, labels
