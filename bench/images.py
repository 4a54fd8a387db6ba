"""JPEG payloads for the benchmarks, made on the spot (no dataset download, no torch).

`jpeg_payloads`: rendered synthetic scenes (what the demo model was trained on). `photo_payloads`: photo-like
640x480 JPEGs, cut from the real photographs that scikit-learn ships, the size and entropy a camera or a web page
gives a real model (their decode cost is what matters to a service).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO_SIZE = (640, 480)  # width, height


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _from_folder(folder: Path, count: int) -> list[bytes]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg"})
    if not files:
        raise FileNotFoundError(f"no .jpg files under {folder}")
    return [files[i % len(files)].read_bytes() for i in range(count)]


def jpeg_payloads(count: int, size: int, seed: int = 123, folder: Path | None = None) -> list[bytes]:
    """`count` JPEG files: read from `folder` if given (cycled), else rendered synthetic scenes of `size` pixels."""
    if folder is not None:
        return _from_folder(folder, count)
    from training.data.synthetic import render_scene

    return [_jpeg(render_scene(np.random.default_rng([seed, index]), size)[0]) for index in range(count)]


def photo_payloads(count: int, size: tuple[int, int] = PHOTO_SIZE, seed: int = 7) -> list[bytes]:
    """`count` distinct photo-like JPEGs of `size` (width, height), quality 90, 4:2:0 chroma.

    Each is a random 4:3 crop (60-100 % of the height) of scikit-learn's china.jpg or flower.jpg, flipped at random,
    resized to `size`, with a little brightness change and sensor-like noise, so no two files decode alike.
    """
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(image) for image in load_sample_images().images]  # uint8 [427, 640, 3]
    rng = np.random.default_rng(seed)
    width, height = size
    payloads = []
    for index in range(count):
        photo = photos[index % len(photos)]
        crop_h = int(photo.shape[0] * rng.uniform(0.6, 1.0))
        crop_w = min(photo.shape[1], round(crop_h * width / height))
        top = int(rng.integers(0, photo.shape[0] - crop_h + 1))
        left = int(rng.integers(0, photo.shape[1] - crop_w + 1))
        crop = Image.fromarray(photo[top:top + crop_h, left:left + crop_w]).resize(size, Image.Resampling.BICUBIC)
        pixels = np.asarray(crop, dtype=np.float32) * rng.uniform(0.85, 1.15)
        pixels += rng.normal(0.0, 2.0, pixels.shape)
        if rng.random() < 0.5:
            pixels = pixels[:, ::-1]
        payloads.append(_jpeg(Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))))
    return payloads


def labelled_scenes(workdir: Path, count: int, seed: int) -> list[tuple[bytes, set[str]]]:
    """`count` 128-px scenes of the demo's generator (objects) rendered into `workdir` with `seed` (another seed
    than the demo's validation split: images it never saw), each with its true labels."""
    import json

    from training.data.synthetic import generate_objects_dataset

    generate_objects_dataset(workdir, num_train=0, num_val=count, image_size=128, seed=seed, workers=2)
    coco = json.loads((workdir / "annotations" / "instances_val.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    labels: dict[int, set[str]] = {}
    for annotation in coco["annotations"]:
        labels.setdefault(annotation["image_id"], set()).add(names[annotation["category_id"]])
    return [((workdir / "images" / image["file_name"]).read_bytes(), labels.get(image["id"], set()))
            for image in coco["images"]]
