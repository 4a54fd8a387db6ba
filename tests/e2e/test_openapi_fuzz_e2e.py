"""Property-based requests generated from the service's own OpenAPI schema (schemathesis) against a real server:
whatever a client sends to any operation, the answer is never a 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from labelserve.local_server import start_server

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 20


def test_no_generated_request_gets_a_server_error(model_repository: Path, tmp_path: Path) -> None:
    server = start_server(model_repository, tmp_path, repository_poll_s="0")
    try:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 8, [op.label for op in operations]
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck),
                      database=None)
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate(base_url=server.url, checks=[not_a_server_error])

            check()
    finally:
        server.stop()
