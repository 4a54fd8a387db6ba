"""From labelled images a user writes by hand to a served model, once per dataset format, through the CLI only, as
docs/own-images.md tells it: `labelserve data check`, `train`, `export` with no extra flag, a real `python -m service`
process, `labelserve predict` (issue 19: CSV and VOC data could not be exported with README's own command).

The images are collages of real photos (scikit-image's cat, coffee cup and rocket, scikit-learn's flower), a photo per
quadrant, so an image holds one to four labels; the annotation files name them as each format does, with paths
relative to where each format resolves them and the commands run from the dataset's folder, as a user's would.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from labelserve.bundle import load_bundle
from labelserve_tools.cli import main
from labelserve_tools.local_server import start_server
from tests.conftest import TINY_TRAINING, bundle_reference

pytestmark = pytest.mark.e2e

SIDE = 64  # collage side in pixels; a photo per 32-pixel quadrant
LABELS = ("cat", "cup", "flower", "rocket")
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
Scene = tuple[str, tuple[str, ...]]  # image id, labels (one photo per label, in quadrant order)
Writer = Callable[[Path, dict[str, list[Scene]], dict[str, Image.Image]], tuple[str, str]]


@pytest.fixture(scope="module")
def photos(sample_photos: list[Image.Image]) -> dict[str, Image.Image]:
    """label -> a real photo of it, cut square."""
    from skimage import data

    def square(image: Image.Image) -> Image.Image:
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        return image.crop((left, top, left + side, top + side)).resize((SIDE // 2, SIDE // 2), Image.LANCZOS)

    sources = {"cat": Image.fromarray(data.chelsea()), "cup": Image.fromarray(data.coffee()),
               "flower": sample_photos[1], "rocket": Image.fromarray(data.rocket())}
    return {label: square(photo) for label, photo in sources.items()}


def _scenes() -> dict[str, list[Scene]]:
    """Every non-empty set of the four labels once in training (15), four of them again, rotated, for validation."""
    sets = [combo for size in (1, 2, 3, 4) for combo in itertools.combinations(LABELS, size)]
    train = [(f"{i:04d}", combo) for i, combo in enumerate(sets, start=1)]
    val = [(f"{i:04d}", combo[1:] + combo[:1]) for i, combo in enumerate(sets[4:12:2], start=101)]
    return {"train": train, "val": val}


def _quadrant(index: int) -> tuple[int, int]:
    half = SIDE // 2
    return (index % 2) * half, (index // 2) * half


def _collage(labels: tuple[str, ...], photos: dict[str, Image.Image]) -> Image.Image:
    canvas = Image.new("RGB", (SIDE, SIDE), (128, 128, 128))
    for index, label in enumerate(labels):
        canvas.paste(photos[label], _quadrant(index))
    return canvas


def _box(index: int) -> list[int]:
    """x, y, w, h of a quadrant (COCO's bbox)."""
    return [*_quadrant(index), SIDE // 2, SIDE // 2]


def write_list(root: Path, scenes: dict[str, list[Scene]], photos: dict[str, Image.Image]) -> tuple[str, str]:
    """data/img/<id>.jpg and data/<split>.csv: `path,labels`, paths relative to the CSV, labels joined by |."""
    (root / "data" / "img").mkdir(parents=True)
    for split, rows in scenes.items():
        lines = ["path,labels"]
        for image_id, labels in rows:
            _collage(labels, photos).save(root / "data" / "img" / f"{image_id}.jpg", quality=90)
            lines.append(f"img/{image_id}.jpg,{'|'.join(labels)}")
        (root / "data" / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return "data/train.csv", "data/val.csv"


def write_attributes(root: Path, scenes: dict[str, list[Scene]], photos: dict[str, Image.Image]) -> tuple[str, str]:
    """data/pictures/<id>.png and data/<split>.csv: `path,<attribute>,...` with a 0/1 cell per attribute."""
    (root / "data" / "pictures").mkdir(parents=True)
    for split, rows in scenes.items():
        lines = ["path," + ",".join(LABELS)]
        for image_id, labels in rows:
            _collage(labels, photos).save(root / "data" / "pictures" / f"{image_id}.png")
            lines.append(f"pictures/{image_id}.png," + ",".join("1" if name in labels else "0" for name in LABELS))
        (root / "data" / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return "data/train.csv", "data/val.csv"


def write_voc(root: Path, scenes: dict[str, list[Scene]], photos: dict[str, Image.Image]) -> tuple[str, str]:
    """VOC/JPEGImages/<id>.jpg, VOC/Annotations/<id>.xml (a box per photo), VOC/ImageSets/Main/<split>.txt."""
    voc = root / "VOC"
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / folder).mkdir(parents=True)
    for split, rows in scenes.items():
        for image_id, labels in rows:
            _collage(labels, photos).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=90)
            objects = "".join(
                f"<object><name>{label}</name><difficult>0</difficult><bndbox><xmin>{x + 1}</xmin><ymin>{y + 1}</ymin>"
                f"<xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>"
                for index, label in enumerate(labels) for x, y, w, h in [_box(index)])
            (voc / "Annotations" / f"{image_id}.xml").write_text(
                f"<annotation><filename>{image_id}.jpg</filename><size><width>{SIDE}</width><height>{SIDE}</height>"
                f"<depth>3</depth></size>{objects}</annotation>")
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i, _ in rows))
    return "VOC/ImageSets/Main/train.txt", "VOC/ImageSets/Main/val.txt"


def write_coco(root: Path, scenes: dict[str, list[Scene]], photos: dict[str, Image.Image]) -> tuple[str, str]:
    """coco/images/<split>/<id>.jpg and coco/annotations/instances_<split>.json (file_name relative to images/)."""
    categories = [{"id": index, "name": label} for index, label in enumerate(LABELS, start=1)]
    category = {c["name"]: c["id"] for c in categories}
    (root / "coco" / "annotations").mkdir(parents=True)
    for split, rows in scenes.items():
        (root / "coco" / "images" / split).mkdir(parents=True)
        images, annotations = [], []
        for number, (image_id, labels) in enumerate(rows, start=1):
            _collage(labels, photos).save(root / "coco" / "images" / split / f"{image_id}.jpg", quality=90)
            images.append({"id": number, "file_name": f"{split}/{image_id}.jpg", "width": SIDE, "height": SIDE})
            annotations += [{"id": len(annotations) + 1, "image_id": number, "category_id": category[label],
                             "bbox": _box(index), "area": (SIDE // 2) ** 2, "iscrowd": 0}
                            for index, label in enumerate(labels)]
        document = {"images": images, "annotations": annotations, "categories": categories}
        (root / "coco" / "annotations" / f"instances_{split}.json").write_text(json.dumps(document))
    return "coco/annotations/instances_train.json", "coco/annotations/instances_val.json"


WRITERS: dict[str, Writer] = {"list": write_list, "attributes": write_attributes, "voc": write_voc,
                              "coco": write_coco}


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_own_images_to_a_served_model(fmt: str, photos: dict[str, Image.Image], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # a user's project folder; the files name paths relative to it
    train, val = WRITERS[fmt](tmp_path, _scenes(), photos)
    settings = ["--config", str(DEMO_CONFIG), "--set", f"data.train_annotations={train}",
                f"data.val_annotations={val}", *TINY_TRAINING, "tensorboard=false",
                *(["task=attributes"] if fmt == "attributes" else [])]

    assert main(["data", "check", *settings]) == 0
    report = capsys.readouterr().out
    assert f"format: {fmt} (inferred from the files); 4 labels" in report and "no problems" in report
    counts = {line.split()[0]: line.split()[1:] for line in report.splitlines() if line.split()[:1] == ["cat"]}
    assert counts == {"cat": ["8", "3"]}  # in 8 of the 15 training collages and 3 of the 4 validation ones

    assert main(["train", "--no-progress", *settings, "output_dir=runs/x"]) == 0
    assert main(["export", "runs/x/best.pt", "--repository", "models", "--name", fmt]) == 0
    bundle = load_bundle(tmp_path / "models" / fmt / "1")
    assert bundle.manifest.labels == LABELS and bundle.manifest.task == ("attributes" if fmt == "attributes"
                                                                         else "objects")
    _collage(("rocket", "cat"), photos).save(tmp_path / "photo.jpg", quality=90)  # a new scene of two labels

    with start_server(tmp_path / "models", tmp_path, repository_poll_s="0") as server:
        capsys.readouterr()
        assert main(["predict", "--url", server.url, "--json", "--attention", "attention", "photo.jpg"]) == 0
        server.stop()
    (result,) = json.loads(capsys.readouterr().out)["results"]
    served = {label["name"]: label["probability"] for label in result["labels"]}
    expected = bundle_reference(bundle)((tmp_path / "photo.jpg").read_bytes())
    assert served.keys() == set(LABELS)
    assert max(abs(served[name] - expected[name]) for name in LABELS) <= 1e-5
    assert sorted(p.name for p in (tmp_path / "attention").glob("*")) == sorted(
        f"photo.{label}.png" for label in result["predicted"])
