"""Watching every label on the demo model (built by its own recipe), served by a real server: the validation scenes
flag nothing; a stream shifted on purpose (a colour hidden, or one class left out) flags exactly the affected label;
the page shows it; a shadow of a second, differently trained version reports per-label flip rates equal to an
offline comparison of the two models on the same images; a canary is sticky per client; `labelserve promote`
moves the default."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from chromium_driver import chromium
from demo_build import DemoBuild
from e2e_support import wait_for
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from bench.repositories import copy_version, write_model_config
from labelserve.bundle import load_bundle
from labelserve.image import open_rgb
from labelserve.label_stats import positives
from labelserve.preprocess import preprocess
from labelserve_tools.local_server import ServerProcess, start_server
from training.data.coco import read_coco

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
HEALTH_SCREENSHOT = ROOT / "docs" / "health.png"
SETTINGS = {"monitor_refresh_s": "0.3", "repository_poll_s": "0"}
CHUNK = 25  # images per request while watching when a label gets flagged
Images = list[tuple[str, bytes]]


def _val_images(demo: DemoBuild, keep: Callable[[set[str]], bool] = lambda labels: True) -> Images:
    val = read_coco(demo.data_dir / "annotations" / "instances_val.json")
    return [(s.path.name, s.path.read_bytes()) for s in val.samples
            if keep({val.labels[i] for i in np.flatnonzero(s.target)})]


def _hide_yellow(data: bytes) -> bytes:
    """A colour cast that hides one colour: yellow pixels turned grey (what a new camera's white balance might do)."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    yellow = (red > 150) & (green > 150) & (blue < 110)
    pixels[yellow] = ((red + green + blue) // 3)[yellow][:, None]
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, format="JPEG", quality=95)
    return out.getvalue()


def _predict(server: ServerProcess, images: Images, headers: dict[str, str] | None = None) -> dict:
    files = [("files", (name, data, "image/jpeg")) for name, data in images]
    response = httpx.post(f"{server.url}/predict", files=files, headers=headers, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def _label_stats(server: ServerProcess, version: int = 1) -> dict:
    response = httpx.get(f"{server.url}/v2/models/demo/versions/{version}/stats", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["model_stats"][0]


def _stream_until_flagged(server: ServerProcess, images: Images) -> tuple[list[str], int | None]:
    """Send `images` CHUNK at a time; (labels flagged at the end, images sent when the first flag showed)."""
    first = None
    for start in range(0, len(images), CHUNK):
        _predict(server, images[start:start + CHUNK])
        if first is None and _label_stats(server)["label_stats"]["flagged"]:
            first = min(start + CHUNK, len(images))
    return _label_stats(server)["label_stats"]["flagged"], first


def test_validation_scenes_flag_nothing_and_tritonclient_reads_the_statistics(demo: DemoBuild,
                                                                              tmp_path: Path) -> None:
    images = _val_images(demo)
    with start_server(demo.repository, tmp_path, **SETTINGS) as server:
        for start in range(0, len(images), 32):
            _predict(server, images[start:start + 32])
        entry = _label_stats(server)
        stats = entry["label_stats"]
        assert (stats["status"], stats["flagged"], stats["window_images"]) == ("ok", [], 600)
        for label in stats["labels"]:  # the same images through the same graph as the baseline
            assert label["served_rate"] == pytest.approx(label["baseline_rate"], abs=1 / 600), label
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        statistics = client.get_inference_statistics(model_name="demo", model_version="1")
        assert statistics["model_stats"][0]["inference_count"] == 600
        assert statistics["model_stats"][0]["label_stats"]["status"] == "ok"
        assert entry["execution_count"] >= 600 / 16 and entry["inference_stats"]["success"]["count"] == 600
        server.stop()


def test_a_colour_hidden_from_the_stream_flags_exactly_its_label_on_metrics_and_the_page(
        demo: DemoBuild, tmp_path: Path) -> None:
    images = [(name, _hide_yellow(data)) for name, data in _val_images(demo)]
    with start_server(demo.repository, tmp_path, **SETTINGS) as server:
        flagged, first = _stream_until_flagged(server, images[:300])
        assert flagged == ["yellow_star"]
        assert first is not None and first <= 200 + CHUNK, first  # flagged as soon as the window may judge
        wait_for(lambda: server.metric("labelserve_labels_flagged", model="demo", version="1") == 1, timeout_s=10)
        assert server.metric("labelserve_label_drift", model="demo", version="1", label="yellow_star") > 0.25
        assert server.metric("labelserve_label_drift_threshold", model="demo", version="1") == 0.25
        _the_page_shows(server, "yellow_star", tmp_path)
        server.stop()


def _the_page_shows(server: ServerProcess, label: str, tmp_path: Path) -> None:
    """The page's health view lists `label` first, flagged."""
    with chromium() as browser:
        browser.get(f"{server.url}/")
        WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#model option"))
        browser.execute_script("document.getElementById('health').open = true")
        WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#health-labels tr.flagged"))
        rows = browser.find_elements(By.CSS_SELECTOR, "#health-labels tr[data-label]")
        assert rows[0].get_attribute("data-label") == label and "flagged" in rows[0].get_attribute("class")
        assert "drifted" in rows[0].text and label in browser.find_element(By.ID, "health-summary").text
        update = os.environ.get("LABELSERVE_UPDATE_SCREENSHOT") == "1"
        screenshot = HEALTH_SCREENSHOT if update else tmp_path / "health.png"
        browser.execute_script("document.getElementById('health').scrollIntoView()")
        assert browser.save_screenshot(str(screenshot))


def test_a_stream_without_one_class_flags_exactly_that_class(demo: DemoBuild, tmp_path: Path) -> None:
    left_out = "red_circle"
    images = _val_images(demo, keep=lambda labels: left_out not in labels)
    with start_server(demo.repository, tmp_path, **SETTINGS) as server:
        flagged, first = _stream_until_flagged(server, images[:300])
        assert flagged == [left_out] and first is not None and first <= 200 + CHUNK
        server.stop()


@pytest.fixture(scope="module")
def two_versions(demo: DemoBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with the demo as version 1 and, as version 2, the same recipe trained again differently (another
    seed, 2 epochs instead of 5)."""
    from export.demo import build_demo_model

    root = tmp_path_factory.mktemp("two-versions")
    copy_version(demo.bundle.path, root, 1, name="demo")
    build_demo_model(root, demo.workdir, force=True, overrides=["seed=1", "optim.epochs=2"], show_progress=False)
    return root


def _offline_flip_rates(root: Path, images: Images) -> dict[str, float]:
    """Per label, how often version 2 decides differently from version 1 on `images`, run in-process."""
    decisions = []
    for version in (1, 2):
        bundle = load_bundle(root / "demo" / str(version))
        spec = bundle.manifest.input
        session = ort.InferenceSession(str(bundle.file("model.onnx")), providers=["CPUExecutionProvider"])
        batch = np.stack([preprocess(open_rgb(io.BytesIO(data), spec), spec) for _, data in images])
        logits = session.run(["logits"], {"images": batch})[0]
        decisions.append(positives(logits, bundle.manifest.thresholds))
    labels = load_bundle(root / "demo" / "1").manifest.labels
    return dict(zip(labels, (decisions[0] != decisions[1]).mean(axis=0).tolist(), strict=True))


def test_a_shadows_flip_rates_equal_an_offline_comparison_of_the_two_versions(two_versions: Path,
                                                                              demo: DemoBuild,
                                                                              tmp_path: Path) -> None:
    write_model_config(two_versions, {"version_policy": {"latest": 2}, "default_version": 1,
                                      "shadow": {"version": 2, "share": 1.0}}, name="demo")
    images = _val_images(demo)[:200]
    with start_server(two_versions, tmp_path, **SETTINGS) as server:
        for sent, image in enumerate(images, start=1):  # one at a time, each copy done before the next: every image
            assert _predict(server, [image])["version"] == 1  # has spare capacity; the shadow never answers
            wait_for(lambda count=sent: _label_stats(server)["shadow"]["compared"] == count, timeout_s=10)
        shadow = _label_stats(server)["shadow"]
        assert (shadow["candidate_version"], shadow["dropped_total"]) == (2, 0)
        served = {entry["name"]: entry["flip_rate"] for entry in shadow["labels"]}
        offline = _offline_flip_rates(two_versions, images)
        assert served == pytest.approx(offline, abs=1 / len(images))
        assert max(offline.values()) > 0  # differently trained: they disagree somewhere
        wait_for(lambda: server.metric("labelserve_shadow_compared", model="demo", version="1",
                                        candidate="2") == len(images), timeout_s=10)
        server.stop()


def test_a_canary_is_sticky_per_client_and_promote_moves_the_default(two_versions: Path, demo: DemoBuild,
                                                                     tmp_path: Path) -> None:
    write_model_config(two_versions, {"version_policy": {"latest": 2}, "default_version": 1,
                                      "canary": {"version": 2, "weight": 0.5}}, name="demo")
    image = _val_images(demo)[:1]
    with start_server(two_versions, tmp_path, **{**SETTINGS, "repository_poll_s": "0.5"}) as server:
        chosen = {}
        for client in range(30):
            versions = {_predict(server, image, {"X-Client-Key": f"client-{client}"})["version"] for _ in range(3)}
            assert len(versions) == 1, f"client-{client} got versions {versions}"
            chosen[client] = versions.pop()
        assert 5 <= sum(v == 2 for v in chosen.values()) <= 25
        pinned = httpx.post(f"{server.url}/predict", data={"version": "1"}, headers={"X-Client-Key": "client-0"},
                            files=[("files", image[0])], timeout=60).json()
        assert pinned["version"] == 1  # a pinned version is never rerouted

        promoted = subprocess.run([sys.executable, "-m", "labelserve_tools.cli", "promote", "--repository",
                                   str(two_versions), "--model", "demo", "--version", "2"], capture_output=True,
                                  text=True, timeout=60, check=False)
        assert promoted.returncode == 0, promoted.stderr
        assert "version 2 now answers" in promoted.stderr and "canary entry dropped" in promoted.stderr
        wait_for(lambda: all(_predict(server, image, {"X-Client-Key": f"client-{c}"})["version"] == 2
                              for c in range(5)), timeout_s=20)
        server.stop()

