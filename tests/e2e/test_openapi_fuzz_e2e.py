"""Property-based requests generated from the service's own OpenAPI schema (schemathesis) against a real server:
whatever a client sends to any operation, the answer is never a server error. The only 5xx allowed are the
documented answers to the client's own choices or to load: 504 `deadline_exceeded` (a generated `timeout_s` of
60 ns cannot be met) and 503 `queue_full` / `not_ready`."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from labelserve_tools.local_server import start_server

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 25
DOCUMENTED_5XX = {(503, "queue_full"), (503, "not_ready"), (504, "deadline_exceeded")}


def _assert_not_a_server_error(case: schemathesis.Case, base_url: str) -> None:
    response = case.call(base_url=base_url)
    if response.status_code < 500:
        return
    try:
        code = response.json().get("code")
    except ValueError:
        code = None
    assert (response.status_code, code) in DOCUMENTED_5XX, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}")


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
                _assert_not_a_server_error(case, server.url)

            check()
    finally:
        server.stop()
