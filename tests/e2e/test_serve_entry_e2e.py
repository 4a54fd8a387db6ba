"""`python -m service` and `labelserve serve` start the same server (`service.server.serve`): JSON logs with exactly one
line per request (the service's own; uvicorn's access log stays off), uvloop + httptools, exit code 0 on SIGTERM
(checked by `stop()`), with one process or with workers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from labelserve_tools.local_server import Entry, ServerProcess, start_server

pytestmark = pytest.mark.e2e

REQUESTS = 6


def _request_lines(server: ServerProcess, marker: str) -> list[str]:
    return [line for line in server.log().splitlines() if marker in line]


@pytest.mark.parametrize(("entry", "arguments", "settings"), [
    ("service", [], {}),
    ("cli", [], {}),
    ("service", [], {"workers": "2"}),
    ("cli", ["--workers", "2"], {}),
], ids=["python -m service", "labelserve serve", "python -m service, 2 workers", "labelserve serve --workers 2"])
def test_one_log_line_per_request_whichever_way_the_server_starts(
    model_repository: Path, tmp_path: Path, entry: Entry, arguments: list[str], settings: dict[str, str],
) -> None:
    with start_server(model_repository, tmp_path, entry=entry, arguments=arguments, repository_poll_s="0",
                      **settings) as server:
        assert server.workers == (2 if settings or arguments else 1)
        for _ in range(REQUESTS):  # a new connection each time, so with workers both take some
            assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        deadline = time.monotonic() + 10
        while len(_request_lines(server, "/healthz")) < REQUESTS and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # a second line per request, if any, would be written by now
        lines = _request_lines(server, "/healthz")
        assert len(lines) == REQUESTS, "\n".join(lines)
        records = server.log_records()
        assert len(records) == len(server.log().splitlines()), "every log line is JSON"
        per_request = [r for r in records if "/healthz" in str(r["message"])]
        assert {r["logger"] for r in per_request} == {"service.observability"}
        assert "event loop uvloop, HTTP parser httptools" in server.log()
        server.stop()
