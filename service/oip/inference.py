"""The Open Inference Protocol's infer, whatever carries it: one request's tensors in, its output tensors out.

OIP over HTTP (service.oip.routes) and over gRPC (service.oip_grpc) decode their wire format into an `InferRequest`
and its input `Tensor`s, call `infer`, and encode what it returns; validation, the work on the model's batcher,
probabilities from logits, and keeping answers for feedback happen here once. Each adapter bounds the work by its
own deadline and client disconnect through `guard`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.types import Scope

from service.errors import InvalidParameterError, TooManyImagesError
from service.observability import current_request_id
from service.oip.codec import InferRequest, OutputTensor, Tensor
from service.pipeline.postprocess import sigmoid
from service.predictor import ImageUpload
from service.repository import ServedModel
from service.retention import keep_answers, prediction_ids
from service.state import ServiceState

__all__ = ["BYTES_INPUT", "PROBABILITIES", "Guard", "InferAnswer", "Results", "infer", "output_specs"]

BYTES_INPUT = "image_bytes"
PROBABILITIES = "probabilities"
Results = list[dict[str, np.ndarray]]
Guard = Callable[[Coroutine[Any, Any, Results]], Awaitable[Results]]


@dataclass(frozen=True)
class InferAnswer:
    """What one infer answered: the version that ran, the outputs asked for, and an id per image."""

    model: str
    version: int
    request_id: str | None
    outputs: list[OutputTensor]
    ids: list[str]


def output_specs(model: ServedModel) -> list[dict[str, Any]]:
    """Name, datatype and shape (-1: the batch) of every output the model can return."""
    manifest = model.manifest
    classes = len(manifest.labels)
    specs = [{"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, classes]},
             {"name": manifest.outputs.logits.name, "datatype": "FP32", "shape": [-1, classes]}]
    if manifest.outputs.attention is not None:
        specs.append({"name": manifest.outputs.attention.name, "datatype": "FP32",
                      "shape": [-1, *manifest.outputs.attention.shape[1:]]})
    return specs


def _work(state: ServiceState, model: ServedModel, tensor: Tensor,
          attention: bool) -> Coroutine[Any, Any, Results]:
    """The work for one input tensor: encoded images go through decode like /predict's, FP32 tensors straight to the
    batcher."""
    manifest = model.manifest
    count = tensor.shape[0] if tensor.shape else 0
    if count > state.settings.max_images_per_request:
        raise TooManyImagesError(f"{count} images in one request, over the limit of "
                                 f"{state.settings.max_images_per_request} (LABELSERVE_MAX_IMAGES_PER_REQUEST)")
    if tensor.name == BYTES_INPUT and tensor.datatype == "BYTES" and len(tensor.shape) == 1:
        assert isinstance(tensor.values, list)
        uploads = [ImageUpload(filename=f"{BYTES_INPUT}[{i}]", data=data) for i, data in enumerate(tensor.values)]
        return state.predictor.infer_uploads(model, uploads, attention)
    if tensor.name == manifest.input_name and tensor.datatype == "FP32":
        if tensor.shape[1:] != manifest.input.shape:
            expected = ", ".join(map(str, manifest.input.shape))
            raise InvalidParameterError(f"input {tensor.name!r} must have shape [N, {expected}], got "
                                        f"{list(tensor.shape)}")
        assert isinstance(tensor.values, np.ndarray)
        return state.predictor.infer(model, list(tensor.values), attention)
    raise InvalidParameterError(f"send one input: {BYTES_INPUT!r} (BYTES, [N]) or {manifest.input_name!r} "
                                f"(FP32, [N, {', '.join(map(str, manifest.input.shape))}]); got {tensor.name!r} "
                                f"({tensor.datatype}, {list(tensor.shape)})")


def _flag(parameters: dict[str, Any], name: str, default: bool, where: str) -> bool:
    """A boolean parameter, which must be a boolean: `bool("false")` is True, so a string is refused (400)."""
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise InvalidParameterError(f"{where}parameters.{name} must be true or false (a JSON boolean), got "
                                    f"{str(value)[:40]!r}")
    return value


def _wanted_outputs(request: InferRequest, model: ServedModel) -> list[tuple[str, bool]]:
    """(name, binary) of each output to return, in the order asked."""
    default_binary = _flag(request.parameters, "binary_data_output", False, "")
    known = [spec["name"] for spec in output_specs(model)]
    if request.outputs is None:
        return [(PROBABILITIES, default_binary), (model.manifest.outputs.logits.name, default_binary)]
    wanted = []
    for output in request.outputs:
        if output.name not in known:
            raise InvalidParameterError(f"unknown output {output.name!r}; this model has {', '.join(known)}")
        wanted.append((output.name, _flag(output.parameters, "binary_data", default_binary,
                                          f"output {output.name!r}: ")))
    return wanted


def _empty(model: ServedModel, name: str) -> np.ndarray:
    """An output for no images: zero rows, the output's other axes kept (`[0, labels]`, `[0, labels, h, w]`)."""
    shape = next(spec["shape"] for spec in output_specs(model) if spec["name"] == name)
    return np.zeros((0, *shape[1:]), np.float32)


def _gather(model: ServedModel, results: Results, name: str) -> np.ndarray:
    logits_name = model.manifest.outputs.logits.name
    if name == PROBABILITIES:
        return sigmoid(np.stack([r[logits_name] for r in results])).astype(np.float32)
    return np.stack([r[name] for r in results])


async def infer(state: ServiceState, name: str, version: int | None, request: InferRequest, tensors: list[Tensor],
                routing: Scope, guard: Guard) -> InferAnswer:
    """Run one infer request on the model version it names (or the one `routing` is given), bounded by `guard`.

    Raises:
        ServiceError: what the request did wrong (400, 404, 413) or what the server could not do (503, 504).
    """
    if len(tensors) != 1:
        raise InvalidParameterError(f"send exactly one input, {BYTES_INPUT!r} or the model's FP32 input; got "
                                    f"{len(tensors)}")
    async with state.repository.lease(name, version, routing) as model:
        outputs = _wanted_outputs(request, model)
        attention_name = model.manifest.outputs.attention.name if model.has_attention else None
        needs_attention = any(output == attention_name for output, _ in outputs)
        results = await guard(_work(state, model, tensors[0], needs_attention))
    tensors_out = [OutputTensor(out, _gather(model, results, out) if results else _empty(model, out), binary)
                   for out, binary in outputs]
    ids = prediction_ids(request.id or current_request_id() or uuid.uuid4().hex, len(results))
    if results and state.settings.retain_predictions:
        images = tensors[0].values if tensors[0].datatype == "BYTES" and state.settings.retain_images else None
        await keep_answers(state.store, state.metrics, model.name, model.version, ids,
                           list(_gather(model, results, PROBABILITIES)),
                           list(images) if isinstance(images, list) else [None] * len(results))
    return InferAnswer(model.name, model.version, request.id, tensors_out, ids)
