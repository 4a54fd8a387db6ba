"""One request's images from bytes to predictions: decode and preprocess on worker threads, batch on the model's
batcher, postprocess on worker threads. The event loop only awaits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from labelserve.image import display_size
from labelserve.preprocess import PreprocessSpec, dct_scale_factor
from service import tracing
from service.batching import Outputs
from service.pipeline import DecodeLimits, PostprocessOptions, Prediction, postprocess, to_network_input
from service.pipeline.decode import decode_opened, is_plain_jpeg, open_checked
from service.repository import ServedModel
from service.shadow import Shadow

__all__ = ["ImageAnswer", "ImageUpload", "Predictor"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ImageUpload:
    """One uploaded file, already read."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class ImageAnswer:
    """One image's prediction and the size it was decoded at."""

    filename: str
    width: int
    height: int
    prediction: Prediction


JpegPreprocessor = Callable[[bytes], np.ndarray | None]


def _prepare(upload: ImageUpload, spec: PreprocessSpec, limits: DecodeLimits,
             jpeg: JpegPreprocessor | None) -> tuple[np.ndarray, tuple[int, int]]:
    """(network input, the image's displayed size) of one upload; the size is the original's even where the JPEG
    is decoded at a DCT scale."""
    header = open_checked(upload.data, upload.filename, limits)
    size = display_size(header)
    if (jpeg is not None and is_plain_jpeg(header) and dct_scale_factor(*size, spec) == 1
            and (array := jpeg(upload.data)) is not None):  # the torch path decodes at full size only
        return array, size
    image = decode_opened(header, upload.data, upload.filename, spec=spec)
    return to_network_input(image, spec), size


class Predictor:
    """Runs the per-image pipeline on each model's decode threads (`ServedModel.decode_pool`; Pillow, simplejpeg
    and NumPy release the GIL)."""

    def __init__(self, limits: DecodeLimits, torch_jpeg_device: str | None = None,
                 shadow_for: Callable[[ServedModel], Shadow | None] = lambda _model: None) -> None:
        """Configure decoding.

        Args:
            limits: byte and pixel limits for each image.
            torch_jpeg_device: decode and preprocess plain JPEGs with torch on this device (`auto`: CUDA when
                present); None keeps Pillow/simplejpeg for everything.
            shadow_for: the shadow version (if any) that gets a copy of a model version's images
                (`ModelRepository.shadow_for`).

        Raises:
            RuntimeError: torch JPEG decoding is asked for where torch, torchcodec or the device is missing.
        """
        self._limits = limits
        self._shadow_for = shadow_for
        self._jpeg_device = None
        self._jpeg: dict[PreprocessSpec, JpegPreprocessor | None] = {}
        if torch_jpeg_device is not None:
            from service.pipeline.torch_jpeg import torch_device

            self._jpeg_device = torch_device(torch_jpeg_device)
            logger.info("plain JPEGs are decoded and preprocessed by torch on %s", self._jpeg_device)

    def _jpeg_for(self, spec: PreprocessSpec) -> JpegPreprocessor | None:
        """The torch JPEG path for a model's spec (built once per spec), or None where Pillow does everything."""
        if self._jpeg_device is None:
            return None
        if spec not in self._jpeg:
            from service.pipeline.torch_jpeg import TorchJpegPreprocessor

            try:
                self._jpeg[spec] = TorchJpegPreprocessor(spec, self._jpeg_device)
            except ValueError as exc:
                logger.warning("Pillow decodes for this model: %s", exc)
                self._jpeg[spec] = None
        return self._jpeg[spec]

    async def predict(self, model: ServedModel, uploads: Sequence[ImageUpload],
                      options: PostprocessOptions) -> list[ImageAnswer]:
        """Predict every upload concurrently (they can share batches); the first failing image fails the request.

        Raises:
            ServiceError: the first error of any image (the other images' work is cancelled).
        """
        return await _all([self._predict_one(model, upload, options) for upload in uploads])

    async def infer_uploads(self, model: ServedModel, uploads: Sequence[ImageUpload],
                            attention: bool) -> list[Outputs]:
        """Raw network outputs of every upload, in upload order (decoded and batched as in `predict`)."""
        return [outputs for outputs, _ in await _all([self._outputs(model, upload, attention) for upload in uploads])]

    async def infer(self, model: ServedModel, arrays: Sequence[np.ndarray], attention: bool) -> list[Outputs]:
        """Run ready network inputs through the model's batcher (they may share batches with other requests)."""
        return await _all([self._infer_one(model, array, attention) for array in arrays])

    async def _infer_one(self, model: ServedModel, array: np.ndarray, attention: bool) -> Outputs:
        return await self._submit(model, array, attention)

    def _submit(self, model: ServedModel, array: np.ndarray, attention: bool) -> asyncio.Future[Outputs]:
        """Queue one image on the model's batcher, and a copy on its shadow's if it has one (never awaited here)."""
        pending = model.batcher.submit(array, attention=attention)
        shadow = self._shadow_for(model)
        if shadow is not None:
            shadow.mirror(array, pending, model.batcher)
        return pending

    async def _outputs(self, model: ServedModel, upload: ImageUpload,
                       attention: bool) -> tuple[Outputs, tuple[int, int]]:
        """Decode one upload on a worker thread and run it through the batcher; (outputs, decoded size).

        The image is announced to the batcher while it decodes, so batches forming meanwhile wait for it.
        """
        with model.batcher.incoming():
            spec = model.manifest.input
            with tracing.span("decode"):
                array, size = await model.decode_pool.run(_prepare, upload, spec, self._limits,
                                                          self._jpeg_for(spec))
            pending = self._submit(model, array, attention)
        return await pending, size

    async def _predict_one(self, model: ServedModel, upload: ImageUpload, options: PostprocessOptions) -> ImageAnswer:
        outputs, size = await self._outputs(model, upload, options.attention)
        if options.encodes_png:  # PNG encoding: a worker thread's job
            prediction = await model.decode_pool.run(postprocess, outputs, model.manifest, size, options)
        else:  # a sigmoid and a sort of C values: cheaper here than a round trip through the pool
            prediction = postprocess(outputs, model.manifest, size, options)
        return ImageAnswer(filename=upload.filename, width=size[0], height=size[1], prediction=prediction)


async def _all(work: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run `work` concurrently and return the results in order; the first failure cancels the rest and is raised
    as itself (not as an ExceptionGroup), so the error handlers see the domain error."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(item) for item in work]
    except ExceptionGroup as errors:
        raise _first_leaf(errors) from errors
    return [task.result() for task in tasks]


def _first_leaf(group: BaseExceptionGroup) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
