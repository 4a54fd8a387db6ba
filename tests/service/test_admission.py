"""AdmissionMiddleware's two stages (bodies read within their budget, then compute slots) and the wait at each door,
on a real ASGI app under real asyncio concurrency."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from service.admission import AdmissionMiddleware
from service.protocols import is_inference

SCOPE = {"type": "http", "method": "POST", "path": "/predict", "headers": []}


class Gated:
    """An inference route that answers 200 once its gate opens; records the order it admitted requests in."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.admitted: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        self.admitted.append(scope["name"])
        await self.gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def request(app: AdmissionMiddleware, name: str) -> tuple[int, dict, float]:
    """(status, JSON body or {}, seconds taken) of one request through the middleware."""
    started = time.monotonic()
    messages: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        messages.append(message)

    await app({**SCOPE, "name": name}, receive, send)
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    return status, (json.loads(body) if status != 200 else {}), time.monotonic() - started


def test_without_a_wait_the_request_over_the_limit_is_refused_at_once() -> None:
    async def main() -> None:
        route = Gated()
        app = AdmissionMiddleware(route, is_inference, max_in_flight=1, wait_s=0.0)
        holder = asyncio.create_task(request(app, "holder"))
        await asyncio.sleep(0.01)
        status, body, seconds = await request(app, "refused")
        assert (status, body["code"]) == (503, "server_busy") and seconds < 0.1
        route.gate.set()
        assert (await holder)[0] == 200
        assert app.in_flight == 0

    asyncio.run(main())


def test_waiting_requests_take_freed_slots_in_arrival_order() -> None:
    async def main() -> None:
        route = Gated()
        app = AdmissionMiddleware(route, is_inference, max_in_flight=1, wait_s=2.0)
        tasks = []
        for name in ("first", "second", "third"):
            tasks.append(asyncio.create_task(request(app, name)))
            await asyncio.sleep(0.01)
        assert route.admitted == ["first"] and len(app._compute.slots.waiting) == 2
        route.gate.set()  # each answer hands its slot to the next in line
        results = await asyncio.gather(*tasks)
        assert [status for status, _, _ in results] == [200, 200, 200]
        assert route.admitted == ["first", "second", "third"]
        assert app.in_flight == 0 and not app._compute.slots.waiting

    asyncio.run(main())


def test_a_request_that_waited_its_time_in_vain_is_refused_and_the_wait_is_said() -> None:
    async def main() -> None:
        route = Gated()
        app = AdmissionMiddleware(route, is_inference, max_in_flight=1, wait_s=0.2)
        holder = asyncio.create_task(request(app, "holder"))
        await asyncio.sleep(0.01)
        status, body, seconds = await request(app, "late")
        assert (status, body["code"]) == (503, "server_busy")
        assert 0.2 <= seconds < 1.0 and "after waiting 0.2 s" in body["error"]
        route.gate.set()
        await holder
        assert app.in_flight == 0 and not app._compute.slots.waiting

    asyncio.run(main())


def test_a_client_that_leaves_while_waiting_loses_its_place_and_leaks_no_slot() -> None:
    async def main() -> None:
        route = Gated()
        app = AdmissionMiddleware(route, is_inference, max_in_flight=1, wait_s=5.0)
        holder = asyncio.create_task(request(app, "holder"))
        await asyncio.sleep(0.01)
        leaving = asyncio.create_task(request(app, "leaving"))
        staying = asyncio.create_task(request(app, "staying"))
        await asyncio.sleep(0.01)
        leaving.cancel()
        await asyncio.sleep(0.01)
        route.gate.set()
        assert (await holder)[0] == 200 and (await staying)[0] == 200
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert route.admitted == ["holder", "staying"]
        assert app.in_flight == 0 and not app._compute.slots.waiting

    asyncio.run(main())


def test_other_routes_are_never_held_at_the_door() -> None:
    async def main() -> None:
        route = Gated()
        route.gate.set()
        app = AdmissionMiddleware(route, is_inference, max_in_flight=1, wait_s=5.0)
        app._compute.slots.held = 1  # every slot taken
        messages: list[dict] = []

        async def send(message: dict) -> None:
            messages.append(message)

        await asyncio.wait_for(app({**SCOPE, "method": "GET", "path": "/metrics", "name": "scrape"}, None, send), 1)
        assert messages[0]["status"] == 200

    asyncio.run(main())


def test_a_negative_wait_is_refused() -> None:
    with pytest.raises(ValueError, match="wait_s"):
        AdmissionMiddleware(Gated(), is_inference, max_in_flight=1, wait_s=-1)


class Upload:
    """A request body that arrives in the pieces given, each once its event is set (all at once by default)."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = list(pieces)
        self.reads = 0
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> dict:
        await self.release.wait()
        self.reads += 1
        if not self.pieces:
            return {"type": "http.disconnect"}
        piece = self.pieces.pop(0)
        return {"type": "http.request", "body": piece, "more_body": bool(self.pieces)}


class Echo:
    """An inference route that answers the body it was given, once its gate opens."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        message = await receive()
        self.bodies.append(message["body"])
        assert not message["more_body"]
        await self.gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": message["body"]})


BODY_SCOPE = {**SCOPE, "headers": [(b"content-length", b"6")]}


async def post(app: AdmissionMiddleware, upload: Upload, scope: dict | None = None) -> tuple[int, dict | bytes]:
    """(status, JSON body of an error or the raw body of a 200) of one request with a body."""
    messages: list[dict] = []

    async def send(message: dict) -> None:
        messages.append(message)

    await app(dict(scope or BODY_SCOPE), upload, send)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, (body if status == 200 else json.loads(body))


def test_the_app_gets_the_whole_body_in_one_message_and_the_bytes_are_given_back() -> None:
    async def main() -> None:
        route = Echo()
        app = AdmissionMiddleware(route, is_inference, max_in_flight=1, upload_buffer_bytes=100)
        assert await post(app, Upload(b"abc", b"def")) == (200, b"abcdef")
        assert route.bodies == [b"abcdef"] and app.buffered_bytes == 0 and app.uploading == 0

    asyncio.run(main())


def test_a_slow_upload_holds_no_compute_slot() -> None:
    async def main() -> None:
        route = Echo()
        app = AdmissionMiddleware(route, is_inference, max_in_flight=1, wait_s=0.0)
        slow = Upload(b"slo", b"w!!")
        slow.release.clear()  # its body does not arrive yet
        waiting = asyncio.create_task(post(app, slow))
        await asyncio.sleep(0.01)
        assert app.uploading == 1 and app.in_flight == 0
        assert await post(app, Upload(b"ready!")) == (200, b"ready!")  # computed while the slow body is out
        slow.release.set()
        assert await waiting == (200, b"slow!!")

    asyncio.run(main())


def test_beyond_the_upload_slots_a_request_waits_at_the_door_body_unread_then_is_refused() -> None:
    async def main() -> None:
        app = AdmissionMiddleware(Echo(), is_inference, max_in_flight=4, max_uploads=1, wait_s=0.1)
        slow = Upload(b"abcdef")
        slow.release.clear()
        holder = asyncio.create_task(post(app, slow))
        await asyncio.sleep(0.01)
        refused = Upload(b"abcdef")
        status, body = await post(app, refused)
        assert (status, body["code"]) == (503, "server_busy") and "LABELSERVE_MAX_UPLOADS" in body["error"]
        assert refused.reads == 0
        slow.release.set()
        assert (await holder)[0] == 200

    asyncio.run(main())


def test_a_body_that_would_pass_the_byte_budget_is_refused_and_holds_nothing() -> None:
    async def main() -> None:
        app = AdmissionMiddleware(Echo(), is_inference, max_in_flight=1, upload_buffer_bytes=8)
        status, body = await post(app, Upload(b"12345", b"67890"))
        assert (status, body["code"]) == (503, "server_busy") and "LABELSERVE_UPLOAD_BUFFER_BYTES" in body["error"]
        assert app.buffered_bytes == 0
        assert await post(app, Upload(b"1234567")) == (200, b"1234567")  # the budget is whole again

    asyncio.run(main())


def test_a_body_not_in_by_the_deadline_is_the_clients_408() -> None:
    async def main() -> None:
        app = AdmissionMiddleware(Echo(), is_inference, max_in_flight=1, request_timeout_s=0.2)
        stalled = Upload(b"abc", b"def")
        stalled.release.clear()
        started = time.monotonic()
        status, body = await post(app, stalled)
        assert (status, body["code"]) == (408, "request_timeout") and "LABELSERVE_REQUEST_TIMEOUT_S" in body["error"]
        assert 0.2 <= time.monotonic() - started < 1.0 and app.uploading == 0 and app.buffered_bytes == 0

    asyncio.run(main())


def test_a_client_gone_mid_body_is_a_499_or_what_the_http_layer_answered_it_with() -> None:
    from service.errors import RequestTimeoutError, record_protocol_error

    async def main() -> None:
        app = AdmissionMiddleware(Echo(), is_inference, max_in_flight=1)
        gone = Upload()  # the first receive is a disconnect
        status, body = await post(app, gone)
        assert (status, body["code"]) == (499, "client_disconnected")
        scope = {**BODY_SCOPE, "state": {}}
        record_protocol_error(scope, RequestTimeoutError("the request body stalled"))
        status, body = await post(app, Upload(), scope)
        assert (status, body) == (408, {"error": "the request body stalled", "code": "request_timeout"})
        assert app.buffered_bytes == 0 and app.uploading == 0

    asyncio.run(main())


def test_an_unauthorised_inference_request_is_refused_before_its_body_is_read() -> None:
    from service.errors import UnauthorizedError

    async def main() -> None:
        app = AdmissionMiddleware(Echo(), is_inference, max_in_flight=1,
                                  authorize=lambda scope: UnauthorizedError("no key"))
        upload = Upload(b"abcdef")
        status, body = await post(app, upload)
        assert (status, body["code"]) == (401, "unauthorized") and upload.reads == 0

    asyncio.run(main())
