"""A torch Dataset over multi-label samples from any reader (COCO, VOC, CSV)."""

from __future__ import annotations

import torch
from PIL import Image
from torch.utils.data import Dataset

from labelserve.image import open_rgb
from labelserve.preprocess import PreprocessSpec
from training.data.samples import MultiLabelSet
from training.data.transforms import Transform

__all__ = ["MultiLabelDataset", "load_rgb"]


def load_rgb(path: str, spec: PreprocessSpec | None = None) -> Image.Image:
    """Decode an image file the way the service does (`labelserve.image.open_rgb`: at the spec's DCT scale for large
    JPEGs, EXIF orientation, one RGB conversion that scales 16-bit greyscale instead of clipping it)."""
    return open_rgb(path, spec)


class MultiLabelDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Yields `(image [3, H, W] float32, target [C] float32)`.

    Images are decoded for `spec` (the bundle's preprocessing), as the service decodes uploads, then `transform`ed.
    """

    def __init__(self, data: MultiLabelSet, transform: Transform, spec: PreprocessSpec | None = None) -> None:
        self.data = data
        self.transform = transform
        self.spec = spec

    def __len__(self) -> int:
        return len(self.data.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.data.samples[index]
        image = self.transform(load_rgb(str(sample.path), self.spec))
        return image, torch.from_numpy(sample.target)
