"""Helpers shared by the service tests (imported by name: this folder is on sys.path under pytest)."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from labelserve.bundle import MANIFEST_FILENAME
from service.observability import Metrics
from service.repository import ModelRepository
from service.settings import Settings

Reference = Callable[[bytes], dict[str, float]]  # image bytes -> {label: probability}


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    """Encode an image as JPEG in memory."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def copy_model(source: Path, root: Path, name: str, version: int, drop_attention: bool = False) -> Path:
    """Copy a bundle version under a new name/version by rewriting its manifest (no torch needed)."""
    target = root / name / str(version)
    shutil.copytree(source, target)
    manifest = json.loads((target / MANIFEST_FILENAME).read_text(encoding="utf-8"))
    manifest.update(name=name, version=version)
    if drop_attention:
        manifest["outputs"]["attention"] = None
    (target / MANIFEST_FILENAME).write_text(json.dumps(manifest), encoding="utf-8")
    return target


def image_parts(*images: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    """(name, JPEG bytes) pairs as multipart `files` parts."""
    return [("files", (name, data, "image/jpeg")) for name, data in images]


def assert_error(response: Any, status: int, code: str, fragment: str = "") -> None:
    """The response is an error of the service's one JSON shape, with this status, code and message fragment."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "code"}
    assert body["code"] == code
    assert fragment.lower() in body["error"].lower()


def served_models(settings: Settings) -> list[str]:
    """Names of the models a repository with these settings ends up serving after its first load."""

    async def load() -> list[str]:
        repository = ModelRepository(settings, Metrics())
        await repository.load_all()
        served = [m.name for m in repository.models()]
        await repository.stop(1.0)
        return served

    return asyncio.run(load())
