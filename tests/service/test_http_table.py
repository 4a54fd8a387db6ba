"""The HTTP layer's pieces that need no socket: body deadlines, the connection table's cap and sweep, and the raw
error answers it writes (checked with a real HTTP parser). Real connections: tests/e2e/test_hostile_e2e.py."""

from __future__ import annotations

import asyncio
import json

import h11
import pytest

from service.errors import RequestTimeoutError, TooManyConnectionsError, raw_error_response
from service.http import ConnectionLimits, ConnectionTable, Phase
from service.http.table import SWEEP_S
from service.settings import Settings

LIMITS = ConnectionLimits(keep_alive_s=75, header_timeout_s=10, body_stall_timeout_s=10, body_min_rate=1000,
                          body_grace_s=5, send_timeout_s=10, max_header_bytes=32768, max_header_fields=100,
                          max_connections=3)


class Recorder:
    """A table observer that keeps what it is told."""

    def __init__(self) -> None:
        self.closed: list[str] = []
        self.by_phase: dict[str, int] = {}
        self.descriptors: tuple[int, int] | None = None

    def set_connections(self, by_phase: dict[str, int]) -> None:
        self.by_phase = by_phase

    def count_connection_closed(self, reason: str) -> None:
        self.closed.append(reason)

    def set_file_descriptors(self, open_count: int, limit: int) -> None:
        self.descriptors = (open_count, limit)


class Connection:
    """A connection as the table sees one: a phase, a deadline check, an eviction."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.phase = Phase.IDLE
        self.checked: list[float] = []
        self.evicted = False

    def check_deadline(self, now: float) -> None:
        self.checked.append(now)

    def evict(self) -> None:
        self.evicted = True


def test_a_body_times_out_on_a_stall_or_below_the_minimum_rate_after_the_grace() -> None:
    assert LIMITS.body_deadline(started=0, last_byte=0, received=0) == 5  # nothing: the grace, then out
    assert LIMITS.body_deadline(started=0, last_byte=6, received=3000) == 8  # 3 s bought by 3,000 bytes
    assert LIMITS.body_deadline(started=0, last_byte=2, received=100_000) == 12  # fast, then a stall of 10 s
    no_minimum = ConnectionLimits(**{**LIMITS.__dict__, "body_min_rate": 0})
    assert no_minimum.body_deadline(started=0, last_byte=3, received=0) == 13


def test_at_the_cap_the_longest_idle_connection_makes_room_and_with_none_idle_the_newcomer_is_refused() -> None:
    async def main() -> None:
        recorder = Recorder()
        table = ConnectionTable(LIMITS, recorder)
        first, second, third = Connection("first"), Connection("second"), Connection("third")
        for connection in (first, second, third):
            assert table.add(connection)
            table.mark_idle(connection)
        table.mark_busy(first)
        table.mark_idle(first)  # idle again: now the most recent, so `second` has been idle longest
        newcomer = Connection("newcomer")
        assert table.add(newcomer) and second.evicted and not first.evicted and len(table) == 3
        table.mark_busy(first)
        table.mark_busy(third)
        table.mark_busy(newcomer)
        assert not table.add(Connection("refused")) and len(table) == 3
        assert recorder.closed == ["evicted", "refused"]

    asyncio.run(main())


def test_the_sweep_checks_every_connection_reports_phases_and_stops_with_the_last() -> None:
    async def main() -> None:
        recorder = Recorder()
        table = ConnectionTable(LIMITS, recorder)
        assert recorder.by_phase == {phase.value: 0 for phase in Phase}  # every series exists from the start
        assert recorder.descriptors is not None and 0 < recorder.descriptors[0] < recorder.descriptors[1]
        connection = Connection("one")
        connection.phase = Phase.BODY
        table.add(connection)
        await asyncio.sleep(SWEEP_S * 2.5)
        assert len(connection.checked) >= 2 and recorder.by_phase["body"] == 1
        table.discard(connection)
        await asyncio.sleep(SWEEP_S * 1.5)
        assert recorder.by_phase["body"] == 0 and table._timer is None  # the sweep ended with the last connection

    asyncio.run(main())


@pytest.mark.parametrize("error", [RequestTimeoutError("the headers were not complete within 10 s"),
                                   TooManyConnectionsError("the server holds its limit of 4096 connections")])
def test_a_raw_error_answer_is_valid_http_with_the_json_error_and_closes(error: Exception) -> None:
    raw = raw_error_response(error, [(b"server", b"uvicorn")])
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    response = client.next_event()
    body = client.next_event()
    assert isinstance(response, h11.Response) and isinstance(body, h11.Data)
    headers = {name.decode(): value.decode() for name, value in response.headers}
    assert headers["connection"] == "close" and headers["content-type"] == "application/json"
    document = json.loads(body.data)
    assert document == {"error": error.message, "code": error.code} and headers["x-error-code"] == error.code
    assert response.status_code == (408 if isinstance(error, RequestTimeoutError) else 503)
    assert ("retry-after" in headers) == isinstance(error, TooManyConnectionsError)


def test_an_upload_buffer_smaller_than_one_request_is_refused() -> None:
    with pytest.raises(ValueError, match="LABELSERVE_UPLOAD_BUFFER_BYTES"):
        Settings(upload_buffer_bytes=1 << 20, max_request_bytes=2 << 20, max_image_bytes=1 << 20)


def test_the_connection_cap_is_fitted_to_the_open_file_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    try:
        limits = ConnectionLimits.from_settings(Settings(max_connections=4096))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert limits.max_connections == 512 - 128
