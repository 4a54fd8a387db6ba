"""Postprocessing: probabilities, thresholds (manifest and override), top-k and attention maps."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from labelserve.bundle import EngineSpec, Manifest, OutputsSpec, TensorSpec
from labelserve.preprocess import PreprocessSpec
from service.pipeline.postprocess import PostprocessOptions, attention_png, attention_size, postprocess, sigmoid

LABELS = ("cat", "dog", "bird", "fish")


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return Manifest(
        name="m", version=1, task="objects", head="query2label", backbone="test", labels=LABELS,
        thresholds=(0.5, 0.3, 0.9, 0.5), input=PreprocessSpec(height=8, width=8),
        outputs=OutputsSpec(logits=TensorSpec(name="logits", shape=("batch", 4)),
                            attention=TensorSpec(name="attention", shape=("batch", 4, 2, 3))),
        engines=(EngineSpec(format="onnx", file="model.onnx", max_batch=4),),
    )


def _logit(probability: float) -> float:
    return float(np.log(probability / (1.0 - probability)))


def _outputs(probabilities: list[float]) -> dict[str, np.ndarray]:
    logits = np.array([_logit(p) for p in probabilities], dtype=np.float32)
    attention = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    return {"logits": logits, "attention": attention}


def _png(encoded: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(encoded)))


def test_sigmoid_is_stable_at_extremes() -> None:
    values = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_allclose(values, [0.0, 0.5, 1.0])
    assert np.isfinite(values).all()


def test_labels_are_sorted_and_thresholds_come_from_the_manifest(manifest: Manifest) -> None:
    result = postprocess(_outputs([0.6, 0.4, 0.8, 0.1]), manifest, (10, 10), PostprocessOptions())
    assert [name for name, _ in result.labels] == ["bird", "cat", "dog", "fish"]
    np.testing.assert_allclose([p for _, p in result.labels], [0.8, 0.6, 0.4, 0.1], atol=1e-6)
    # bird 0.8 < its threshold 0.9; dog 0.4 >= its threshold 0.3
    assert result.predicted == ["cat", "dog"]
    assert result.attention is None


def test_threshold_override_applies_to_every_label(manifest: Manifest) -> None:
    outputs = _outputs([0.6, 0.4, 0.8, 0.1])
    assert postprocess(outputs, manifest, (10, 10), PostprocessOptions(threshold=0.5)).predicted == ["bird", "cat"]
    assert postprocess(outputs, manifest, (10, 10), PostprocessOptions(threshold=0.0)).predicted == [
        "bird", "cat", "dog", "fish"]


def test_top_k_limits_labels_but_not_decisions(manifest: Manifest) -> None:
    result = postprocess(_outputs([0.6, 0.4, 0.8, 0.1]), manifest, (10, 10), PostprocessOptions(top_k=1))
    assert [name for name, _ in result.labels] == ["bird"]
    assert result.predicted == ["cat", "dog"]


def test_attention_maps_only_for_predicted_labels_at_the_image_aspect(manifest: Manifest) -> None:
    options = PostprocessOptions(attention=True, attention_max_side=100)
    result = postprocess(_outputs([0.6, 0.4, 0.8, 0.1]), manifest, (400, 200), options)
    assert result.attention is not None
    assert list(result.attention) == ["cat", "dog"]
    image = _png(result.attention["cat"])
    assert image.mode == "L"
    assert image.size == (100, 50)
    assert image.getextrema()[1] == 255


@pytest.mark.parametrize(("size", "max_side", "expected"), [
    ((640, 427), 512, (512, 342)),  # 427 * 0.8 = 341.6
    ((427, 640), 512, (342, 512)),
    ((64, 64), 512, (64, 64)),  # never upscaled past the image
    ((5000, 10), 100, (100, 1)),
])
def test_attention_size_caps_the_longer_side(size: tuple[int, int], max_side: int,
                                             expected: tuple[int, int]) -> None:
    assert attention_size(size, max_side) == expected


def test_attention_png_is_normalised_to_its_maximum() -> None:
    grid = np.array([[0.0, 0.1], [0.2, 0.4]], dtype=np.float32)
    pixels = np.asarray(_png(attention_png(grid, (2, 2))))
    assert pixels.tolist() == [[0, 64], [128, 255]]


def test_all_zero_attention_is_black_not_nan() -> None:
    pixels = np.asarray(_png(attention_png(np.zeros((2, 2), dtype=np.float32), (8, 8))))
    assert pixels.shape == (8, 8)
    assert pixels.max() == 0
