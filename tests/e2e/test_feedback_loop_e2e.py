"""Thresholds that learn, end to end on the demo model and a real server, with the store on SQLite and on a real
PostgreSQL: noisy scenes (a new camera's sensor) make the validation thresholds wrong; users send feedback on 300
answers; the server is killed (SIGKILL) and restarted, and every acknowledged answer and feedback is still there;
`labelserve calibrate` writes a version sharing the weights, which the server loads; on the next 300 scenes its
micro F1 beats the old thresholds'. Also: feedback from two worker processes on one SQLite file loses nothing."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from chromium_driver import chromium
from demo_build import DemoBuild
from e2e_support import wait_for
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from bench.repositories import copy_version, write_model_config
from labelserve.client import AsyncClient, Client
from labelserve_tools.local_server import ServerProcess, start_server
from training.data.coco import read_coco

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SETTINGS = {"repository_poll_s": "0.5"}
FEEDBACK, EVALUATE = 300, 300


def _noisy(data: bytes, seed: int) -> bytes:
    """The scene as a noisier sensor sees it: Gaussian noise of 20 grey levels."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.float32)
    pixels += np.random.default_rng(seed).normal(0.0, 20.0, pixels.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="JPEG", quality=95)
    return out.getvalue()


def _scenes(demo: DemoBuild) -> tuple[list[bytes], list[set[str]]]:
    val = read_coco(demo.data_dir / "annotations" / "instances_val.json")
    images = [_noisy(s.path.read_bytes(), index) for index, s in enumerate(val.samples)]
    truths = [{val.labels[i] for i in np.flatnonzero(s.target)} for s in val.samples]
    return images, truths


def _answers(server: ServerProcess, images: list[bytes], version: int | None = None) -> list[dict]:
    results = []
    with Client(server.url) as client:
        for start in range(0, len(images), 25):
            answer = client.predict(images[start:start + 25], version=version)
            results += [r.model_dump() | {"version": answer.version} for r in answer.results]
    return results


def _micro_f1(results: list[dict], truths: list[set[str]]) -> float:
    tp = fp = fn = 0
    for result, truth in zip(results, truths, strict=True):
        predicted = set(result["predicted"])
        tp, fp, fn = tp + len(predicted & truth), fp + len(predicted - truth), fn + len(truth - predicted)
    return 2 * tp / (2 * tp + fp + fn)


def _kill(server: ServerProcess) -> None:
    """SIGKILL the server's process group: nothing gets to flush or drain."""
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_feedback_survives_a_kill_and_calibration_beats_the_validation_thresholds(
        demo: DemoBuild, tmp_path: Path, store: str, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'feedback.sqlite3'}" if store == "sqlite" else request.getfixturevalue(
        "postgres_url").rsplit("/", 1)[0] + f"/{_fresh_database(request.getfixturevalue('postgres_url'))}"
    root = tmp_path / "models"
    copy_version(demo.bundle.path, root, 1, name="demo")
    write_model_config(root, {"version_policy": {"latest": 2}}, name="demo")  # both served, to compare them
    images, truths = _scenes(demo)
    first, later = slice(0, FEEDBACK), slice(FEEDBACK, FEEDBACK + EVALUATE)

    for run in ("run1", "run2"):
        (tmp_path / run).mkdir()
    server = start_server(root, tmp_path / "run1", store_url=url, **SETTINGS)
    answers = _answers(server, images[first])
    with Client(server.url) as client:
        for answer, truth in zip(answers, truths[first], strict=True):
            client.feedback("demo", answer["id"], labels=sorted(truth))
        last = client.predict(images[:1])  # acknowledged, then killed before anything else happens
    _kill(server)

    with start_server(root, tmp_path / "run2", store_url=url, **SETTINGS) as server:
        with Client(server.url) as client:  # the answer acknowledged right before the kill takes feedback
            assert client.feedback("demo", last.results[0].id, labels=sorted(truths[0])).version == 1
        calibrated = subprocess.run(
            [sys.executable, "-m", "labelserve_tools.cli", "calibrate", "demo", "--repository", str(root), "--store",
             url],
            capture_output=True, text=True, timeout=300, check=False)
        assert calibrated.returncode == 0, calibrated.stderr
        assert f"{FEEDBACK + 1} answers with feedback" in calibrated.stdout  # every acknowledged feedback survived
        assert (root / "demo" / "2" / "model.onnx").stat().st_ino == (root / "demo" / "1" / "model.onnx").stat().st_ino
        wait_for(lambda: [m["version"] for m in httpx.get(f"{server.url}/models").json()["models"]] == [1, 2],
                 timeout_s=30)
        before = _micro_f1(_answers(server, images[later], version=1), truths[later])
        after_answers = _answers(server, images[later])
        assert {a["version"] for a in after_answers} == {2}
        after = _micro_f1(after_answers, truths[later])
        assert after > before + 0.03, (before, after)
        info = httpx.get(f"{server.url}/models").json()["models"][1]["calibration"]
        assert info["source_version"] == 1 and info["answers"] == FEEDBACK + 1
        report = httpx.get(f"{server.url}/models/demo/versions/2/calibration").json()
        assert len(report["labels"]) == len(demo.bundle.manifest.labels)
        if store == "sqlite":
            _the_page_shows_the_calibration(server)
        server.stop()


def _fresh_database(server_url: str) -> str:
    import psycopg

    name = f"loop_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return name


def _the_page_shows_the_calibration(server: ServerProcess) -> None:
    with chromium() as browser:
        browser.get(f"{server.url}/")
        WebDriverWait(browser, 60).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#model option")) == 2)
        Select(browser.find_element(By.ID, "model")).select_by_visible_text("demo v2")
        WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#model-info .calibration"))
        note = browser.find_element(By.CSS_SELECTOR, "#model-info .calibration")
        assert note.get_attribute("data-source") == "1" and "held-out micro F1" in note.text


def test_two_workers_on_one_sqlite_file_lose_no_feedback(model_repository: Path, tmp_path: Path,
                                                         val_jpegs: list[tuple[str, bytes]]) -> None:
    """The one-writer discipline across processes: each worker's writer takes the file's lock in turn."""
    url = f"sqlite:///{tmp_path / 'feedback.sqlite3'}"
    with start_server(model_repository, tmp_path, workers="2", store_url=url, repository_poll_s="0") as server:
        async def one(client_index: int) -> list[str]:
            ids = []
            async with AsyncClient(server.url) as client:
                for round_index in range(8):
                    _name, data = val_jpegs[(client_index + round_index) % len(val_jpegs)]
                    answer = await client.predict([data])
                    await client.feedback("tiny", answer.results[0].id, labels=[])
                    ids.append(answer.results[0].id)
            return ids

        async def main() -> list[str]:
            return [i for ids in await asyncio.gather(*(one(c) for c in range(16))) for i in ids]

        ids = asyncio.run(main())
        server.stop()
    with sqlite3.connect(tmp_path / "feedback.sqlite3") as database:
        kept = {row[0] for row in database.execute("SELECT id FROM feedback")}
    assert len(ids) == 128 and kept == set(ids)
