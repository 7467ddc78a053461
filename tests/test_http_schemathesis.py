"""Property-based API tests: schemathesis drives the live app from its own OpenAPI document.

Every operation gets generated requests (valid and invalid, with and without
the token); no response may be a 500, and each must match the status codes,
content types and schemas that the document declares.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from test_http import TOKENS, Gates, LiveServer, make_planner

from planner.http import StaticTokenVerifier, create_app

TOKEN = next(iter(TOKENS))


@pytest.fixture
def api_schema() -> Iterator[Any]:
    gates = Gates()
    gates.gate("").set()
    app = create_app(make_planner(gates), verifier=StaticTokenVerifier(TOKENS), keepalive=0.2)
    with LiveServer(app) as live:
        schema = schemathesis.openapi.from_dict(app.openapi)
        schema.config.update(base_url=live.url)
        yield schema
    gates.open_all()


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_conforms_to_its_openapi(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
        # Like the seed (FastAPI on pydantic), validation is lax: 0 is false and
        # "1" is 1, which a JSON Schema calls invalid.  Every other check runs.
        excluded_checks=[schemathesis.checks.negative_data_rejection],
    )
