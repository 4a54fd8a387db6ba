"""bench.grpc_raw_client, the benchmarks' own gRPC load client, against a real server: its answers are the ones
tritonclient gets, messages larger than HTTP/2's windows wait for the server's window updates instead of breaking
the connection, and errors arrive as their gRPC status names, with the connection still usable."""

from __future__ import annotations

import asyncio
import io
from collections import Counter

import numpy as np
import pytest
import tritonclient.grpc as triton
from PIL import Image
from tritonclient.grpc import service_pb2

from bench.grpc_raw_client import GrpcConnection, closed_loop_grpc, grpc_message
from bench.protocols import GRPC_INFER, grpc_infer_message
from labelserve_tools.local_server import ServerProcess

pytestmark = pytest.mark.e2e



def _calls(target: str, messages: list[bytes]) -> tuple[list[tuple[str, bytes]], int]:
    """Every message as a concurrent call on one connection: the answers, and how often a call waited for window."""
    async def run() -> tuple[list[tuple[str, bytes]], int]:
        connection = GrpcConnection(target)
        await connection.open()
        try:
            block = connection.headers_block(GRPC_INFER, 30)
            answers = await asyncio.gather(*(connection.call(block, grpc_message(m)) for m in messages))
            return list(answers), connection.window_waits
        finally:
            await connection.close()

    return asyncio.run(run())


def _noise_jpeg(side: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95)
    return out.getvalue()


def test_answers_equal_tritonclients(server: ServerProcess, photo_jpegs: list[tuple[str, bytes]]) -> None:
    images = [data for _, data in photo_jpegs[:3]]
    answers, _ = _calls(server.grpc_target, [grpc_infer_message("tiny", image) for image in images])
    client = triton.InferenceServerClient(server.grpc_target)
    for image, (status, body) in zip(images, answers, strict=True):
        assert status == "OK"
        response = service_pb2.ModelInferResponse.FromString(body)
        ours = np.frombuffer(response.raw_output_contents[0], "<f4")
        tensor = triton.InferInput("image_bytes", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([image], dtype=np.object_))
        theirs = client.infer("tiny", [tensor], outputs=[triton.InferRequestedOutput("probabilities")])
        np.testing.assert_allclose(ours, theirs.as_numpy("probabilities").ravel(), rtol=1e-6)


def test_messages_beyond_the_flow_control_windows_wait_for_window_updates(server: ServerProcess) -> None:
    images = [_noise_jpeg(420, seed) for seed in range(32)]  # ~150 KB each, 4.8 MB at once: grpc's windows are 4 MiB
    assert all(len(image) > 65535 for image in images)
    answers, waits = _calls(server.grpc_target, [grpc_infer_message("tiny", image) for image in images])
    assert [status for status, _ in answers] == ["OK"] * len(images)
    assert waits > 0


def test_errors_arrive_as_status_names_and_the_connection_goes_on(
        server: ServerProcess, photo_jpegs: list[tuple[str, bytes]]) -> None:
    image = photo_jpegs[0][1]
    missing, broken, fine = (grpc_infer_message("missing", image), grpc_infer_message("tiny", b"not a jpeg"),
                             grpc_infer_message("tiny", image))
    answers, _ = _calls(server.grpc_target, [missing, broken, fine])
    assert [status for status, _ in answers] == ["NOT_FOUND", "INVALID_ARGUMENT", "OK"]
    statuses: Counter = Counter()
    latencies: list[float] = []
    elapsed = asyncio.run(closed_loop_grpc(server.grpc_target, GRPC_INFER, [fine, missing], concurrency=4,
                                           seconds=1.0, latencies=latencies, statuses=statuses))
    assert elapsed >= 1.0 and set(statuses) == {200, "NOT_FOUND"}
    assert len(latencies) == statuses[200] and abs(statuses[200] - statuses["NOT_FOUND"]) <= 4
