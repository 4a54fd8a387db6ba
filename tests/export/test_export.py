"""Export: ONNX with a dynamic batch and two outputs, the manifest, and the parity gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from export.parity import ParityError, check_onnx_parity
from export.repository import export_bundle, load_parity_images
from export.wrapper import ExportWrapper
from labelserve.bundle import load_bundle
from labelserve.errors import ExportError
from labelserve_tools.cli import main
from training.checkpoint import load_checkpoint, model_from_checkpoint


def test_bundle_contents(model_repository: Path, tiny_checkpoint: Path) -> None:
    bundle = load_bundle(model_repository / "tiny" / "1")
    manifest = bundle.manifest
    assert manifest.head == "query2label" and manifest.backbone == "test_resnet" and manifest.task == "objects"
    assert len(manifest.labels) == 20
    calibrated = load_checkpoint(tiny_checkpoint).thresholds
    assert calibrated is not None and manifest.thresholds == tuple(calibrated)  # calibrated on validation
    assert manifest.outputs.logits.shape == ("batch", 20)
    assert manifest.outputs.attention is not None and manifest.outputs.attention.shape == ("batch", 20, 2, 2)
    assert manifest.engines[0].format == "onnx" and manifest.engines[0].max_batch == 8
    assert manifest.metrics["parity_max_abs_diff_logits"] <= 1e-4
    assert "mAP" in manifest.metrics
    assert {"torch", "onnx", "onnxruntime", "timm"} <= set(manifest.producer)
    assert manifest.input.height == manifest.input.width == 64


def test_onnx_runs_at_any_batch_size(model_repository: Path) -> None:
    session = ort.InferenceSession(str(model_repository / "tiny" / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "attention"]
    assert session.get_inputs()[0].shape[0] == "batch"
    for batch in (1, 5, 8):
        logits, attention = session.run(None, {"images": np.zeros((batch, 3, 64, 64), dtype=np.float32)})
        assert logits.shape == (batch, 20) and attention.shape == (batch, 20, 2, 2)


def test_parity_on_real_photos_and_scenes(tiny_checkpoint: Path, model_repository: Path, photo_dir: Path,
                                          tiny_dataset: Path) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    wrapper = ExportWrapper(model_from_checkpoint(checkpoint))
    images = load_parity_images([photo_dir, tiny_dataset / "images" / "val"], checkpoint.preprocess, limit=10)
    report = check_onnx_parity(wrapper, model_repository / "tiny" / "1" / "model.onnx", images)
    assert report.passed and report.num_images == 10 and report.batch_sizes == (1, 10)
    assert report.max_abs_diff["logits"] <= 1e-4 and report.max_abs_diff["attention"] <= 1e-4


def test_parity_catches_a_wrong_engine(tiny_checkpoint: Path, model_repository: Path, photo_dir: Path,
                                       tmp_path: Path) -> None:
    model = onnx.load(str(model_repository / "tiny" / "1" / "model.onnx"))
    bias = next(t for t in model.graph.initializer if numpy_helper.to_array(t).ndim == 1
                and numpy_helper.to_array(t).shape[0] == 20)
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.01, bias.name))
    tampered = tmp_path / "tampered.onnx"
    onnx.save(model, str(tampered))
    checkpoint = load_checkpoint(tiny_checkpoint)
    images = load_parity_images([photo_dir], checkpoint.preprocess)
    with pytest.raises(ParityError, match="beyond"):
        check_onnx_parity(ExportWrapper(model_from_checkpoint(checkpoint)), tampered, images)


def test_cli_export_adds_the_next_version(tiny_checkpoint: Path, photo_dir: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    args = ["export", str(tiny_checkpoint), "--repository", str(repo), "--name", "cli-model", "--max-batch", "4",
            "--parity-images", str(photo_dir)]
    assert main(args) == 0
    assert main(args) == 0
    assert sorted(p.name for p in (repo / "cli-model").iterdir()) == ["1", "2"]
    assert load_bundle(repo / "cli-model" / "2").manifest.engines[0].max_batch == 4


def test_export_without_parity_images_says_so(tiny_checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="no parity images"):
        export_bundle(tiny_checkpoint, tmp_path, "x", parity_images=[tmp_path / "empty"])
    with pytest.raises(ExportError, match="does not exist"):
        export_bundle(tiny_checkpoint, tmp_path, "x", parity_images=[tmp_path / "absent"])
    assert not (tmp_path / "x").exists()


def test_a_tensorrt_plan_asked_for_where_none_can_be_built_fails_before_any_work(
        tiny_checkpoint: Path, photo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from export.tensorrt_plan import tensorrt_missing

    problem = tensorrt_missing()
    if problem is None:
        pytest.skip("TensorRT and a GPU are here; tests/service/test_tensorrt_engine.py builds a real plan")
    with pytest.raises(ExportError, match="TensorRT plans"):
        export_bundle(tiny_checkpoint, tmp_path, "x", parity_images=[photo_dir], tensorrt=True)
    assert not (tmp_path / "x").exists()
    args = ["export", str(tiny_checkpoint), "--repository", str(tmp_path), "--name", "x", "--tensorrt"]
    capsys.readouterr()
    assert main(args) == ExportError.exit_code
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: TensorRT plans cannot be built here")


def test_the_bundle_carries_a_baseline_of_what_the_exported_graph_answers_on_the_validation_split(
        model_repository: Path, tiny_dataset: Path) -> None:
    from labelserve.label_stats import bin_counts, positives
    from labelserve.preprocess import preprocess
    from training.data.coco import read_coco
    from training.data.dataset import load_rgb

    bundle = load_bundle(model_repository / "tiny" / "1")
    manifest = bundle.manifest
    baseline = manifest.baseline
    val = read_coco(tiny_dataset / "annotations" / "instances_val.json")
    assert baseline is not None and baseline.images == len(val.samples) == 16
    assert "instances_val.json" in baseline.source
    session = ort.InferenceSession(str(bundle.file("model.onnx")), providers=["CPUExecutionProvider"])
    inputs = np.stack([preprocess(load_rgb(str(s.path), manifest.input), manifest.input) for s in val.samples])
    logits = session.run(["logits"], {"images": inputs})[0]
    assert baseline.histogram_array().tolist() == bin_counts(logits).tolist()
    assert baseline.positive_rate == pytest.approx(tuple(positives(logits, manifest.thresholds).mean(axis=0)))


def test_export_with_no_baseline_images_writes_none(tiny_checkpoint: Path, photo_dir: Path, tmp_path: Path) -> None:
    bundle, _ = export_bundle(tiny_checkpoint, tmp_path, "tiny", parity_images=[photo_dir], baseline_images=0)
    assert bundle.manifest.baseline is None
