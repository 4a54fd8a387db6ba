"""Load clients as users write them, for each protocol: the CPU-hungry side of a 2-core benchmark.

The project's own clients (labelserve_tools.loadgen, and grpcio with prebuilt messages) encode every request once
and spend little CPU beside the server. Most users run something heavier on the same machine, and the server's
figure then depends on what the client leaves it:
  predict   `httpx.AsyncClient()` with its defaults, `files=` per request, `response.json()`
  oip-http  the same client posting the binary tensor extension (what tritonclient[http] sends), the answer's
            header parsed with `json` and its tensor read with NumPy
  grpc      `tritonclient.grpc.aio.InferenceServerClient`: `InferInput.set_data_from_numpy` per request,
            `result.as_numpy`
Each runs `concurrency` callers back to back for `seconds`, appending each answer's latency and counting statuses.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
import numpy as np

__all__ = ["run_plain"]

Caller = Callable[[int], Awaitable[int]]  # payload index -> status


async def _callers(call: Caller, concurrency: int, seconds: float, latencies: list[float],
                   statuses: Counter) -> float:
    started = time.perf_counter()
    deadline = started + seconds

    async def caller(index: int) -> None:
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            try:
                status = await call(index)
            except (httpx.HTTPError, OSError) as exc:
                statuses[type(exc).__name__] += 1
            else:
                statuses[status] += 1
                if status == 200:
                    latencies.append(time.perf_counter() - sent)
            index += 1

    await asyncio.gather(*(caller(i * 7) for i in range(concurrency)))
    return time.perf_counter() - started


async def _httpx(protocol: str, url: str, model: str, payloads: list[bytes], concurrency: int, seconds: float,
                 latencies: list[float], statuses: Counter) -> float:
    async with httpx.AsyncClient(timeout=60) as client:
        async def predict(index: int) -> int:
            response = await client.post(f"{url}/predict", data={"model": model},
                                         files={"files": ("image.jpg", payloads[index % len(payloads)], "image/jpeg")})
            if response.status_code == 200:
                response.json()
            return response.status_code

        async def oip(index: int) -> int:
            payload = payloads[index % len(payloads)]
            header = json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                             "parameters": {"binary_data_size": len(payload) + 4}}],
                                 "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
            response = await client.post(f"{url}/v2/models/{model}/infer",
                                         content=header + struct.pack("<I", len(payload)) + payload,
                                         headers={"Content-Type": "application/octet-stream",
                                                  "Inference-Header-Content-Length": str(len(header))})
            if response.status_code == 200:
                length = int(response.headers["Inference-Header-Content-Length"])
                json.loads(response.content[:length])
                np.frombuffer(response.content[length:], dtype=np.float32)
            return response.status_code

        return await _callers(predict if protocol == "predict" else oip, concurrency, seconds, latencies, statuses)


async def _tritonclient_grpc(target: str, model: str, payloads: list[bytes], concurrency: int, seconds: float,
                             latencies: list[float], statuses: Counter) -> float:
    from tritonclient.grpc import InferInput, InferRequestedOutput
    from tritonclient.grpc.aio import InferenceServerClient
    from tritonclient.utils import InferenceServerException

    client = InferenceServerClient(target)
    try:
        async def infer(index: int) -> int:
            image = InferInput("image_bytes", [1], "BYTES")
            image.set_data_from_numpy(np.array([payloads[index % len(payloads)]], dtype=np.object_))
            try:
                result = await client.infer(model, [image], outputs=[InferRequestedOutput("probabilities")])
            except InferenceServerException as exc:
                return exc.status() or "error"  # type: ignore[return-value]
            result.as_numpy("probabilities")
            return 200

        return await _callers(infer, concurrency, seconds, latencies, statuses)
    finally:
        await client.close()


def run_plain(protocol: str, url: str, grpc_target: str, model: str, payloads: list[bytes], concurrency: int,
              seconds: float, latencies: list[float], statuses: Counter) -> float:
    """Drive one protocol with its plain client; the seconds it ran."""
    if protocol == "grpc":
        return asyncio.run(_tritonclient_grpc(grpc_target, model, payloads, concurrency, seconds, latencies,
                                              statuses))
    return asyncio.run(_httpx(protocol, url, model, payloads, concurrency, seconds, latencies, statuses))
