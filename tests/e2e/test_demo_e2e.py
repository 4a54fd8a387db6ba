"""The demo model as `make serve` builds it: the real recipe (data -> training -> export) from nothing, then served
by a real uvicorn process, which must label the synthetic validation scenes well (mAP >= 0.90, computed here from
the HTTP answers, not taken from the training log)."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import numpy as np
import pytest
from demo_build import DemoBuild

from export.demo import DemoData
from labelserve_tools.local_server import start_server
from training.data.coco import read_coco
from training.metrics import mean_average_precision

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REQUIRED_MAP = 0.90
FILES_PER_REQUEST = 32


def test_demo_recipe_builds_a_model_the_server_answers_correctly_with(demo: DemoBuild, tmp_path: Path) -> None:
    bundle, build_minutes = demo.bundle, demo.build_minutes
    assert build_minutes < 10, f"the demo recipe took {build_minutes:.1f} min; make serve promises at most 10"
    assert bundle.manifest.metrics["mAP"] >= REQUIRED_MAP

    data = DemoData()
    val = read_coco(demo.data_dir / "annotations" / "instances_val.json")
    assert len(val.samples) == data.num_val
    server = start_server(demo.repository, tmp_path, max_batch_size="32")
    try:
        scores = np.zeros((len(val.samples), len(val.labels)))
        predicted = np.zeros_like(scores)
        for start in range(0, len(val.samples), FILES_PER_REQUEST):
            chunk = val.samples[start:start + FILES_PER_REQUEST]
            files = [("files", (s.path.name, s.path.read_bytes(), "image/jpeg")) for s in chunk]
            response = httpx.post(f"{server.url}/predict", files=files, timeout=120)
            assert response.status_code == 200, response.text
            for row, result in enumerate(response.json()["results"], start=start):
                probabilities = {label["name"]: label["probability"] for label in result["labels"]}
                scores[row] = [probabilities[name] for name in val.labels]
                predicted[row] = [name in result["predicted"] for name in val.labels]
    finally:
        server.stop()

    targets = val.targets()
    served_map = float(mean_average_precision(scores, targets)["map"])
    exact_sets = float(np.mean(np.all(predicted == targets, axis=1)))
    assert served_map >= REQUIRED_MAP, f"served mAP {served_map:.3f}"
    assert served_map == pytest.approx(bundle.manifest.metrics["mAP"], abs=0.01)  # same model, same val split
    assert exact_sets >= 0.5, f"only {exact_sets:.0%} of val scenes got exactly their label set"
    logger.warning("demo: built in %.1f min, served mAP %.4f, exact label sets %.1f%%", build_minutes, served_map,
                   100 * exact_sets)
