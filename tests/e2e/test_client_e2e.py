"""`labelserve.client` (sync and async) and the `labelserve predict` command against real servers: answers equal
`/predict`'s own, API errors come back as ApiError / a non-zero exit with the API's message, the API key is sent,
attention overlays are written, and a 503 is retried after its Retry-After until the model is there."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from labelserve.client import ApiError, AsyncClient, Client
from labelserve.overlay import decode_attention
from labelserve.schemas import PredictResponse
from labelserve_tools.cli import main
from labelserve_tools.local_server import ServerProcess, start_server

pytestmark = pytest.mark.e2e

KEY = "client-key"
TOLERANCE = 1e-6  # the same image in another batch composition


@pytest.fixture(scope="module")
def keyed_server(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    running = start_server(model_repository, tmp_path_factory.mktemp("keyed"), api_key=KEY, repository_poll_s="0")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def scenes(tiny_dataset: Path) -> list[Path]:
    return sorted((tiny_dataset / "images" / "val").glob("*.jpg"))[:3]


def _raw_predict(url: str, paths: list[Path], **form: str) -> PredictResponse:
    files = [("files", (path.name, path.read_bytes(), "image/jpeg")) for path in paths]
    response = httpx.post(f"{url}/predict", files=files, data=form, timeout=60)
    response.raise_for_status()
    return PredictResponse.model_validate(response.json())


def _assert_same(got: PredictResponse, expected: PredictResponse) -> None:
    assert (got.model, got.version) == (expected.model, expected.version)
    for mine, theirs in zip(got.results, expected.results, strict=True):
        assert [label.name for label in mine.labels] == [label.name for label in theirs.labels]
        assert max(abs(a.probability - b.probability) for a, b in zip(mine.labels, theirs.labels,
                                                                      strict=True)) <= TOLERANCE
        assert mine.predicted == theirs.predicted
        assert (mine.width, mine.height) == (theirs.width, theirs.height)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_client_takes_paths_bytes_and_pil_images(server: ServerProcess, scenes: list[Path]) -> None:
    with Image.open(scenes[2]) as opened:
        pil = opened.convert("RGB")
    with Client(server.url) as client:
        answer = client.predict([scenes[0], scenes[1].read_bytes(), pil])
        assert [model.name for model in client.models().models] == ["tiny"]
    assert isinstance(answer, PredictResponse)
    assert [r.filename for r in answer.results] == [scenes[0].name, "image1", "image2.png"]
    files = [("files", (scenes[0].name, scenes[0].read_bytes(), "image/jpeg")),
             ("files", ("image1", scenes[1].read_bytes(), "image/jpeg")),
             ("files", ("image2.png", _png(pil), "image/png"))]  # PIL images travel as lossless PNG
    expected = httpx.post(f"{server.url}/predict", files=files, timeout=60).json()
    _assert_same(answer, PredictResponse.model_validate(expected))


def test_options_and_attention_come_back_as_the_api_declares_them(server: ServerProcess, scenes: list[Path]) -> None:
    with Client(server.url) as client:
        answer = client.predict(scenes[0], top_k=3, threshold=0.3, attention=True, timeout_s=30, model="tiny",
                                version=1)
    _assert_same(answer, _raw_predict(server.url, scenes[:1], top_k="3", threshold="0.3", attention="true"))
    result = answer.results[0]
    assert len(result.labels) == 3 and result.attention is not None
    assert set(result.attention) == set(result.predicted)
    for encoded in result.attention.values():
        assert decode_attention(encoded).shape == (result.height, result.width)


def test_the_async_client_answers_concurrent_calls(server: ServerProcess, scenes: list[Path]) -> None:
    async def run() -> list[PredictResponse]:
        async with AsyncClient(server.url) as client:
            assert (await client.models()).models[0].name == "tiny"
            return await asyncio.gather(*(client.predict(scene) for scene in scenes))

    for answer, scene in zip(asyncio.run(run()), scenes, strict=True):
        _assert_same(answer, _raw_predict(server.url, [scene]))


def test_api_errors_are_one_exception_with_status_and_code(server: ServerProcess, keyed_server: ServerProcess,
                                                           scenes: list[Path]) -> None:
    with Client(server.url) as client, pytest.raises(ApiError) as unsupported:
        client.predict(b"plain text, not an image")
    assert (unsupported.value.status, unsupported.value.code) == (415, "unsupported_image")
    assert "not an image in an accepted format" in unsupported.value.message
    with Client(server.url) as client, pytest.raises(ApiError) as unknown:
        client.predict(scenes[0], model="missing")
    assert (unknown.value.status, unknown.value.code) == (404, "model_not_found")

    with Client(keyed_server.url) as client, pytest.raises(ApiError) as unauthorized:
        client.predict(scenes[0])
    assert (unauthorized.value.status, unauthorized.value.code) == (401, "unauthorized")
    with Client(keyed_server.url, api_key=KEY) as client:
        _assert_same(client.predict(scenes[0]), _raw_predict(server.url, scenes[:1]))

    async def unauthorized_async() -> None:
        async with AsyncClient(keyed_server.url, api_key="wrong") as client:
            await client.models()

    with pytest.raises(ApiError, match="not valid"):
        asyncio.run(unauthorized_async())


def _add_model_later(source: Path, root: Path, delay_s: float) -> threading.Thread:
    def add() -> None:
        time.sleep(delay_s)
        staging = root / ".staging"
        shutil.copytree(source, staging / "tiny" / "1")
        (staging / "tiny").rename(root / "tiny")  # whole, in one step

    thread = threading.Thread(target=add, daemon=True)
    thread.start()
    return thread


def test_a_503_is_retried_after_retry_after_and_the_retries_are_bounded(
        model_repository: Path, tmp_path: Path, scenes: list[Path]) -> None:
    root = tmp_path / "repository"
    root.mkdir()
    with start_server(root, tmp_path, ready_path="/healthz", repository_poll_s="0.5") as server:
        with Client(server.url, max_retries=1) as client, pytest.raises(ApiError) as not_ready:
            client.predict(scenes[0])
        assert (not_ready.value.status, not_ready.value.code) == (503, "not_ready")
        assert not_ready.value.retry_after_s == 1
        assert server.metric("labelserve_requests_total", route="/predict", status="503") == 2  # tried twice

        adding = _add_model_later(model_repository / "tiny" / "1", root, delay_s=1.5)
        started = time.monotonic()
        with Client(server.url, max_retries=30, max_retry_wait_s=2) as client:
            answer = client.predict(scenes[0])
        adding.join()
        assert time.monotonic() - started >= 1.0
        assert server.metric("labelserve_requests_total", route="/predict", status="503") >= 3
        assert server.metric("labelserve_requests_total", route="/predict", status="200") == 1
        _assert_same(answer, _raw_predict(server.url, scenes[:1]))
        server.stop()


def test_the_predict_command_prints_a_table_or_json_and_writes_overlays(
        server: ServerProcess, scenes: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expected = _raw_predict(server.url, scenes[:2], top_k="5")
    assert main(["predict", "--url", server.url, "--top-k", "5", *map(str, scenes[:2])]) == 0
    table = capsys.readouterr().out
    for result in expected.results:
        assert f"{result.filename}  {result.width}x{result.height}  tiny v1" in table
        for label in result.labels:
            marker = "  yes" if label.name in result.predicted else ""
            assert f"{label.probability:>11.4f}{marker}\n" in table.split(result.filename)[1]
            assert label.name in table

    assert main(["predict", "--url", server.url, "--json", str(scenes[0])]) == 0
    _assert_same(PredictResponse.model_validate_json(capsys.readouterr().out), _raw_predict(server.url, scenes[:1]))

    out = tmp_path / "attention"
    assert main(["predict", "--url", server.url, "--attention", str(out), str(scenes[0])]) == 0
    predicted = _raw_predict(server.url, scenes[:1]).results[0].predicted
    written = sorted(path.name for path in out.glob("*.png"))
    assert written == sorted(f"{scenes[0].stem}.{label}.png" for label in predicted) and written
    with Image.open(out / written[0]) as overlay, Image.open(scenes[0]) as image:
        assert overlay.size == image.size and overlay.mode == "RGB"
        assert not np.array_equal(np.asarray(overlay), np.asarray(image.convert("RGB")))


def test_the_predict_command_exits_non_zero_with_the_apis_message(
        server: ServerProcess, keyed_server: ServerProcess, scenes: list[Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image", encoding="utf-8")
    assert main(["predict", "--url", server.url, str(notes)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "notes.txt is not an image in an accepted format" in captured.err and "HTTP 415" in captured.err

    assert main(["predict", "--url", keyed_server.url, str(scenes[0])]) == 1
    assert "HTTP 401, unauthorized" in capsys.readouterr().err
    assert main(["predict", "--url", keyed_server.url, "--api-key", KEY, str(scenes[0])]) == 0
    assert scenes[0].name in capsys.readouterr().out
    assert main(["predict", "--url", server.url, str(tmp_path / "absent.jpg")]) == 2


def test_the_predict_command_prints_each_answers_id_and_feedback_takes_it(
        server: ServerProcess, scenes: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--url", server.url, str(scenes[0])]) == 0
    answer_id = capsys.readouterr().out.splitlines()[0].rsplit("  id ", 1)[1]
    labels = Client(server.url).models().models[0].labels
    assert main(["feedback", answer_id, "--model", "tiny", "--url", server.url, "--confirm", labels[0],
                 "--reject", labels[1]]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"{answer_id} (tiny v1): present {labels[0]}; absent {labels[1]};")
    assert main(["feedback", answer_id, "--model", "tiny", "--url", server.url, "--labels"]) == 0  # an empty image
    assert f"present none; absent {', '.join(labels)}; 0 labels not said" in capsys.readouterr().out
    assert main(["feedback", "no-such-answer", "--model", "tiny", "--url", server.url, "--labels"]) == 1
    assert "HTTP 404, prediction_not_found" in capsys.readouterr().err
    assert main(["feedback", answer_id, "--model", "tiny", "--url", server.url]) == 2  # nothing said
    assert "--labels" in capsys.readouterr().err
    with Client(server.url) as client:
        known = client.feedback("tiny", answer_id, confirm=[labels[2]])
    assert known.present == [labels[2]] and known.unknown == 0


def test_the_command_runs_as_a_program(server: ServerProcess, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "labelserve_tools.cli", "predict", "--url", server.url, str(notes)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1 and "HTTP 415, unsupported_image" in result.stderr


def test_the_client_imports_neither_the_service_nor_torch() -> None:
    check = ("import sys, labelserve.client, labelserve_tools.cli, labelserve_tools.predict_report; "
             "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'service', 'torch', 'training', 'export', "
             "'fastapi'}); print(json.dumps(bad))")
    result = subprocess.run([sys.executable, "-c", f"import json; {check}"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
