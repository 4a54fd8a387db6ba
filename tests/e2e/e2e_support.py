"""Helpers the end-to-end tests share: waiting for what a real server reports, and /predict's answers as an array."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import numpy as np

from labelserve_tools.local_server import ServerProcess

__all__ = ["predict_probabilities", "wait_for"]


def wait_for(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.1) -> None:
    """Poll `condition` until it holds; fail the test when `timeout_s` pass first (metrics and logs a server writes
    after it answered arrive a little later)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout_s:g} s"
        time.sleep(interval_s)


def predict_probabilities(server: ServerProcess, images: list[tuple[str, bytes]], labels: tuple[str, ...]
                          ) -> np.ndarray:
    """`[N, labels]` probabilities of `images` as /predict answers them, in the order of `labels`."""
    files = [("files", (name, data, "image/jpeg")) for name, data in images]
    results = httpx.post(f"{server.url}/predict", files=files, timeout=60).json()["results"]
    rows = [{label["name"]: label["probability"] for label in result["labels"]} for result in results]
    return np.array([[row[name] for name in labels] for row in rows])
