"""AdmissionMiddleware's slots and its wait at the door, on a real ASGI app under real asyncio concurrency."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from service.admission import AdmissionMiddleware

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
        app = AdmissionMiddleware(route, max_in_flight=1, wait_s=0.0)
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
        app = AdmissionMiddleware(route, max_in_flight=1, wait_s=2.0)
        tasks = []
        for name in ("first", "second", "third"):
            tasks.append(asyncio.create_task(request(app, name)))
            await asyncio.sleep(0.01)
        assert route.admitted == ["first"] and len(app._waiting) == 2
        route.gate.set()  # each answer hands its slot to the next in line
        results = await asyncio.gather(*tasks)
        assert [status for status, _, _ in results] == [200, 200, 200]
        assert route.admitted == ["first", "second", "third"]
        assert app.in_flight == 0 and not app._waiting

    asyncio.run(main())


def test_a_request_that_waited_its_time_in_vain_is_refused_and_the_wait_is_said() -> None:
    async def main() -> None:
        route = Gated()
        app = AdmissionMiddleware(route, max_in_flight=1, wait_s=0.2)
        holder = asyncio.create_task(request(app, "holder"))
        await asyncio.sleep(0.01)
        status, body, seconds = await request(app, "late")
        assert (status, body["code"]) == (503, "server_busy")
        assert 0.2 <= seconds < 1.0 and "after waiting 0.2 s" in body["error"]
        route.gate.set()
        await holder
        assert app.in_flight == 0 and not app._waiting

    asyncio.run(main())


def test_a_client_that_leaves_while_waiting_loses_its_place_and_leaks_no_slot() -> None:
    async def main() -> None:
        route = Gated()
        app = AdmissionMiddleware(route, max_in_flight=1, wait_s=5.0)
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
        assert app.in_flight == 0 and not app._waiting

    asyncio.run(main())


def test_other_routes_are_never_held_at_the_door() -> None:
    async def main() -> None:
        route = Gated()
        route.gate.set()
        app = AdmissionMiddleware(route, max_in_flight=1, wait_s=5.0)
        app.in_flight = 1  # every slot taken
        messages: list[dict] = []

        async def send(message: dict) -> None:
            messages.append(message)

        await asyncio.wait_for(app({**SCOPE, "method": "GET", "path": "/metrics", "name": "scrape"}, None, send), 1)
        assert messages[0]["status"] == 200

    asyncio.run(main())


def test_a_negative_wait_is_refused() -> None:
    with pytest.raises(ValueError, match="wait_s"):
        AdmissionMiddleware(Gated(), max_in_flight=1, wait_s=-1)
