"""KServe v2 gRPC messages <-> the protocol-neutral infer request (service.oip.codec's `InferRequest`, `Tensor`).

Inputs come as `raw_input_contents` (what tritonclient sends: FP32 little-endian, BYTES as 4-byte length-prefixed
elements, the same layout as the HTTP binary extension, decoded by the same code) or as typed `contents`
(`fp32_contents`, `bytes_contents`). Outputs always go back as `raw_output_contents`, as Triton answers; the HTTP
`binary_data` flags mean nothing here. Parameters become the Python values the HTTP adapter sees, so a string where a
boolean belongs is refused the same way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.errors import InvalidParameterError
from service.oip.codec import InferRequest, InputSpec, OutputTensor, RequestedOutput, Tensor, decode_tensor
from service.oip_grpc._generated import grpc_service_pb2 as pb

__all__ = ["decode_infer", "encode_infer", "parameter_values"]


def parameter_values(parameters: Any) -> dict[str, Any]:
    """A protobuf `map<string, InferParameter>` as plain values (bool, int, str, float)."""
    values: dict[str, Any] = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = getattr(parameter, choice) if choice is not None else None
    return values


def _typed_contents(spec: InputSpec, contents: Any) -> np.ndarray | list[bytes]:
    """An input's values from its typed `contents` field."""
    count = math.prod(spec.shape)
    if spec.datatype == "BYTES":
        values: np.ndarray | list[bytes] = list(contents.bytes_contents)
        given = len(values)
    else:
        values = np.asarray(contents.fp32_contents, dtype=np.float32)
        given = values.size
    if given != count:
        raise InvalidParameterError(f"input {spec.name!r}: shape {spec.shape} needs {count} values, its contents "
                                    f"hold {given}")
    return values


def decode_infer(message: pb.ModelInferRequest) -> tuple[InferRequest, list[Tensor]]:
    """The request's parameters, requested outputs and decoded inputs.

    Raises:
        InvalidParameterError: contents that disagree with the shape, raw contents that do not pair with the inputs,
            unsupported datatypes (INVALID_ARGUMENT).
    """
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise InvalidParameterError(f"raw_input_contents holds {len(raw)} tensors for {len(message.inputs)} inputs; "
                                    "send one per input, or none and each input's contents")
    specs = [InputSpec(name=tensor.name, shape=list(tensor.shape), datatype=tensor.datatype,
                       parameters=parameter_values(tensor.parameters)) for tensor in message.inputs]
    outputs = ([RequestedOutput(name=output.name, parameters=parameter_values(output.parameters))
                for output in message.outputs] if message.outputs else None)
    if not specs:
        raise InvalidParameterError("the request has no inputs: send image_bytes (BYTES, [N]) or the model's FP32 "
                                    "input")
    request = InferRequest(id=message.id or None, parameters=parameter_values(message.parameters), inputs=specs,
                           outputs=outputs)
    tensors = [decode_tensor(spec, raw[index] if raw else None,
                             lambda spec, index=index: _typed_contents(spec, message.inputs[index].contents))
               for index, spec in enumerate(specs)]
    return request, tensors


def encode_infer(model: str, version: int, request_id: str | None, outputs: list[OutputTensor],
                 ids: list[str]) -> pb.ModelInferResponse:
    """The response: every output's metadata and its little-endian float32 bytes in `raw_output_contents`, the
    answers' ids (for feedback) in the `prediction_ids` parameter, comma-separated."""
    response = pb.ModelInferResponse(model_name=model, model_version=str(version), id=request_id or "")
    response.parameters["prediction_ids"].string_param = ",".join(ids)
    for output in outputs:
        response.outputs.add(name=output.name, datatype="FP32", shape=list(output.values.shape))
        response.raw_output_contents.append(np.ascontiguousarray(output.values, dtype="<f4").tobytes())
    return response
