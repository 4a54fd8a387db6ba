"""`check_dataset` on small CSV lists of real photos written here: counts per label and split, every problem with the
file and line that names it, and a training run that refuses such a dataset before it writes anything (issue 19: a
missing image was found inside the data loader in epoch 1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from labelserve.errors import DataError
from training.config import DataConfig, load_config
from training.data.check import check_dataset, format_report


@pytest.fixture
def photos(sample_photos: list[Image.Image], tmp_path: Path) -> Path:
    """tmp_path/img/{china,flower}.jpg: scikit-learn's two photos, small."""
    (tmp_path / "img").mkdir()
    for name, photo in zip(("china", "flower"), sample_photos, strict=True):
        photo.resize((64, 43)).save(tmp_path / "img" / f"{name}.jpg", quality=90)
    return tmp_path


def _data(root: Path, train: str, val: str) -> DataConfig:
    (root / "train.csv").write_text(train)
    (root / "val.csv").write_text(val)
    return DataConfig(train_annotations=str(root / "train.csv"), val_annotations=str(root / "val.csv"),
                      image_size=32)


def test_a_good_dataset_is_counted_per_label_and_split(photos: Path) -> None:
    data = _data(photos, "path,labels\nimg/china.jpg,building|sky\nimg/flower.jpg,flower\n",
                 "path,labels\nimg/flower.jpg,flower\n")
    report = check_dataset(data)
    assert report.ok and report.format == "list" and report.inferred
    assert report.labels == ("building", "flower", "sky")
    train, val = report.splits
    assert (train.images, train.positives, val.images, val.positives) == (2, (1, 1, 1), 1, (0, 1, 0))
    text = format_report(report)
    assert "format: list (inferred from the files); 3 labels" in text and "no problems" in text
    assert "label 'sky' has no positive image in the validation split" in text
    assert "1 images are in both splits" in text  # flower.jpg: validation would flatter the model


def test_validation_columns_follow_the_training_split_by_name(photos: Path) -> None:
    report = check_dataset(_data(photos, "path,labels\nimg/china.jpg,a|b\nimg/flower.jpg,c\n",
                                 "path,labels\nimg/flower.jpg,c|a\n"))
    assert report.val.labels == ("a", "b", "c")
    assert report.val.targets().tolist() == [[1.0, 0.0, 1.0]]


def test_every_problem_is_found_and_named_by_file_and_line(photos: Path) -> None:
    (photos / "img" / "cut.jpg").write_bytes((photos / "img" / "china.jpg").read_bytes()[:400])  # truncated
    (photos / "img" / "notes.jpg").write_text("not an image")
    data = _data(photos, "path,labels\nimg/china.jpg,building\nimg/gone.jpg,building\nimg/cut.jpg,flower\n",
                 "path,labels\nimg/flower.jpg,flower\nimg/notes.jpg,building\nimg/flower.jpg,tree\n")
    report = check_dataset(data)
    found = [str(problem) for problem in report.problems]
    train_csv, val_csv = photos / "train.csv", photos / "val.csv"
    assert report.problem_count == 4, found
    assert f"{val_csv}:4: label 'tree' is not in the training split" in found[0]
    assert found[1].startswith(f"{train_csv}:3: {photos / 'img' / 'gone.jpg'} does not exist (paths are relative to "
                               f"the folder of train.csv: {photos})")
    assert found[2].startswith(f"{train_csv}:4: {photos / 'img' / 'cut.jpg'} does not decode as an image")
    assert found[3].startswith(f"{val_csv}:3: {photos / 'img' / 'notes.jpg'} does not decode as an image")
    with pytest.raises(DataError) as refused:
        report.raise_for_problems()
    assert "\n" not in str(refused.value) and str(refused.value).startswith(found[0])
    assert "(and 3 more); `labelserve data check` with the same --config and --set lists every problem" in \
        str(refused.value)


def test_a_validation_split_without_any_known_label_is_a_problem(photos: Path) -> None:
    report = check_dataset(_data(photos, "path,labels\nimg/china.jpg,building\n", "path,labels\nimg/flower.jpg,\n"))
    assert [p.what for p in report.problems] == ["no validation image carries a label the training split has: "
                                                 "nothing to measure the model on"]


def test_training_refuses_such_a_dataset_before_it_writes_anything(photos: Path) -> None:
    from training.train import run_training

    _data(photos, "path,labels\nimg/china.jpg,building\nimg/gone.jpg,flower\n", "path,labels\nimg/flower.jpg,flower\n")
    config = load_config(None, [f"data.train_annotations={photos / 'train.csv'}",
                                f"data.val_annotations={photos / 'val.csv'}", "model.backbone=test_resnet",
                                f"output_dir={photos / 'run'}"])
    with pytest.raises(DataError, match=r"train\.csv:3: .*gone\.jpg does not exist"):
        run_training(config, show_progress=False)
    assert not (photos / "run").exists()  # no config.yaml left behind


@pytest.mark.parametrize(("override", "message"), [
    ("model.backbone=resnet_of_my_dreams", r"model.backbone 'resnet_of_my_dreams' is not a timm model name"),
    ("model.head_kwargs={hiden_dim: 8}", r"model \(query2label on test_resnet\): .*hiden_dim"),
])
def test_a_wrong_model_setting_is_a_config_error_and_writes_nothing(photos: Path, override: str,
                                                                    message: str) -> None:
    from labelserve.errors import ConfigError
    from training.train import run_training

    _data(photos, "path,labels\nimg/china.jpg,building\n", "path,labels\nimg/flower.jpg,building\n")
    config = load_config(None, [f"data.train_annotations={photos / 'train.csv'}",
                                f"data.val_annotations={photos / 'val.csv'}", "model.backbone=test_resnet",
                                f"output_dir={photos / 'run'}", override])
    with pytest.raises(ConfigError, match=message):
        run_training(config, show_progress=False)
    assert not (photos / "run").exists()


def test_coco_splits_in_folders_of_their_own_as_ms_coco_keeps_them(photos: Path) -> None:
    """annotations/instances_{train,val}2017.json with file_name relative to train2017/ and val2017/."""
    import json

    for split, name in (("train2017", "china"), ("val2017", "flower")):
        (photos / split).mkdir()
        (photos / "img" / f"{name}.jpg").rename(photos / split / "0001.jpg")
    (photos / "annotations").mkdir()
    for split in ("train2017", "val2017"):
        document = {"images": [{"id": 1, "file_name": "0001.jpg"}], "categories": [{"id": 3, "name": "thing"}],
                    "annotations": [{"id": 1, "image_id": 1, "category_id": 3}]}
        (photos / "annotations" / f"instances_{split}.json").write_text(json.dumps(document))
    data = DataConfig(train_annotations=str(photos / "annotations" / "instances_train2017.json"),
                      val_annotations=str(photos / "annotations" / "instances_val2017.json"), image_size=32)
    report = check_dataset(data)
    assert report.problem_count == 2
    assert f"does not exist (file_name is relative to data.image_root, here {photos / 'images'})" in \
        str(report.problems[0])
    rooted = DataConfig(**{**data.__dict__, "image_root": str(photos / "train2017"),
                           "val_image_root": str(photos / "val2017")})
    assert check_dataset(rooted).ok
