"""Answers that can be answered back, on the real app and a real SQLite store: ids in every answer, feedback kept
and merged, and every kind of bad feedback refused with its JSON error."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from labelserve.bundle import Bundle
from service.app import create_app
from service.settings import Settings

Images = list[tuple[str, bytes]]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store") / "feedback.sqlite3"


@pytest.fixture(scope="module")
def app(model_repository: Path, store_path: Path) -> Iterator[TestClient]:
    settings = Settings(model_repository=model_repository, store_url=f"sqlite:///{store_path}", retain_images=True)
    with TestClient(create_app(settings)) as client:
        yield client


def _predict(app: TestClient, images: Images, request_id: str | None = None) -> dict:
    headers = {"X-Request-ID": request_id} if request_id else {}
    response = app.post("/predict", files=[("files", (n, d, "image/jpeg")) for n, d in images], headers=headers)
    assert response.status_code == 200, response.text
    return response.json() | {"header": response.headers["X-Prediction-Ids"]}


def test_every_answer_has_an_id_the_clients_own_when_it_sends_one(app: TestClient, val_jpegs: Images,
                                                                  store_path: Path) -> None:
    one = _predict(app, val_jpegs[:1], request_id="order-123")
    assert one["results"][0]["id"] == "order-123" == one["header"]
    many = _predict(app, val_jpegs[:3], request_id="batch-7")
    assert [r["id"] for r in many["results"]] == ["batch-7/0", "batch-7/1", "batch-7/2"]
    assert many["header"] == "batch-7/0,batch-7/1,batch-7/2"
    generated = _predict(app, val_jpegs[:1])["results"][0]["id"]
    assert len(generated) == 32
    with sqlite3.connect(store_path) as database:  # kept before the answer was sent, with its image (asked for)
        row = database.execute("SELECT model, version, probabilities, image FROM predictions WHERE id = ?",
                               ("batch-7/1",)).fetchone()
    assert row[:2] == ("tiny", 1) and row[3] == val_jpegs[1][1]
    probabilities = {label["name"]: label["probability"] for label in many["results"][1]["labels"]}
    assert len(np.frombuffer(row[2], "<f4")) == len(probabilities)


def test_feedback_is_kept_merged_and_idempotent(app: TestClient, val_jpegs: Images, tiny_bundle: Bundle) -> None:
    labels = tiny_bundle.manifest.labels
    answer_id = _predict(app, val_jpegs[:1], request_id="fb-1")["results"][0]["id"]
    first = app.post("/v2/models/tiny/feedback", json={"id": answer_id, "confirm": [labels[0]]})
    assert first.status_code == 200, first.text
    assert first.json() == {"id": "fb-1", "model": "tiny", "version": 1, "present": [labels[0]], "absent": [],
                            "unknown": len(labels) - 1}
    second = app.post("/v2/models/tiny/feedback", json={"id": answer_id, "reject": [labels[1]]})
    assert second.json()["present"] == [labels[0]] and second.json()["absent"] == [labels[1]]
    again = app.post("/v2/models/tiny/feedback", json={"id": answer_id, "reject": [labels[1]]})
    assert again.json() == second.json()  # the same feedback twice changes nothing
    full = app.post("/v2/models/tiny/feedback", json={"id": answer_id, "labels": [labels[2]]})
    assert full.json()["present"] == [labels[2]] and full.json()["unknown"] == 0
    statistics = app.get("/v2/models/tiny/versions/1/stats").json()["model_stats"][0]["feedback"]
    assert statistics["answers"] >= 1


@pytest.mark.parametrize(("body", "status", "code", "fragment"), [
    ({"id": "never-given", "labels": []}, 404, "prediction_not_found", "no answer with id 'never-given'"),
    ({"id": "fb-bad", "labels": ["not_a_label"]}, 400, "invalid_parameter", "unknown label(s) ['not_a_label']"),
    ({"id": "fb-bad", "labels": [], "confirm": ["x"]}, 400, "invalid_parameter", "not both"),
    ({"id": "fb-bad"}, 400, "invalid_parameter", "send 'labels'"),
    ({"id": "", "labels": []}, 400, "invalid_parameter", "id"),
    ({"id": "fb-bad", "labels": [], "extra": 1}, 400, "invalid_parameter", "extra"),
    ("not json", 400, "invalid_parameter", "not valid JSON"),
])
def test_bad_feedback_gets_a_json_error(app: TestClient, val_jpegs: Images, body: object, status: int, code: str,
                                        fragment: str) -> None:
    _predict(app, val_jpegs[:1], request_id="fb-bad")
    response = (app.post("/v2/models/tiny/feedback", content=body) if isinstance(body, str)
                else app.post("/v2/models/tiny/feedback", json=body))
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert fragment in response.json()["error"]


def test_feedback_for_another_models_answer_is_404(app: TestClient, val_jpegs: Images) -> None:
    _predict(app, val_jpegs[:1], request_id="fb-other")
    response = app.post("/v2/models/other/feedback", json={"id": "fb-other", "labels": []})
    assert response.status_code == 404 and "not 'other'" in response.json()["error"]
