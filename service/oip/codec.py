"""Open Inference Protocol v2 bodies <-> tensors, including Triton's binary tensor data extension.

A request body is JSON, or (binary extension) JSON of `Inference-Header-Content-Length` bytes followed by the raw
bytes of every input whose `parameters.binary_data_size` is set, in input order. FP32 tensors are little-endian
float32; a BYTES tensor is a sequence of elements, each a 4-byte little-endian length and then the bytes. In plain
JSON, BYTES elements are base64 strings (JPEG bytes are not valid UTF-8 text).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import InvalidParameterError

__all__ = ["HEADER_LENGTH", "InferRequest", "OutputTensor", "RequestedOutput", "Tensor", "decode_request",
           "encode_response"]

HEADER_LENGTH = "Inference-Header-Content-Length"
_LENGTH = struct.Struct("<I")


class InputSpec(BaseModel):
    """One input tensor as the request describes it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: list[Any] | None = None


class RequestedOutput(BaseModel):
    """One output the client asks for."""

    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferRequest(BaseModel):
    """The JSON part of an infer request."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[InputSpec] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None


@dataclass(frozen=True)
class Tensor:
    """A decoded input: FP32 values as an array, BYTES as a list of byte strings."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | list[bytes]


@dataclass(frozen=True)
class OutputTensor:
    """An FP32 output and whether to send it as binary data."""

    name: str
    values: np.ndarray
    binary: bool


def _bad(message: str) -> InvalidParameterError:
    return InvalidParameterError(message)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise _bad(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
    if not 0 < length <= len(body):
        raise _bad(f"{HEADER_LENGTH} is {length}, but the body has {len(body)} bytes")
    return body[:length], body[length:]


def _parse_json(header: bytes) -> InferRequest:
    try:
        return InferRequest.model_validate(json.loads(header))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(f"the request header is not valid JSON: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise _bad(f"the request is not a valid inference request: {problems}") from None


def _split_bytes_elements(raw: bytes, name: str) -> list[bytes]:
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise _bad(f"input {name!r}: BYTES data ends inside an element's 4-byte length")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise _bad(f"input {name!r}: a BYTES element claims {size} bytes but only {len(raw) - offset} remain")
        elements.append(raw[offset:offset + size])
        offset += size
    return elements


def _from_json_data(spec: InputSpec, count: int) -> np.ndarray | list[bytes]:
    if spec.data is None:
        raise _bad(f"input {spec.name!r} has neither 'data' nor parameters.binary_data_size")
    flat = list(_flatten(spec.data))
    if len(flat) != count:
        raise _bad(f"input {spec.name!r}: shape {spec.shape} needs {count} values, 'data' has {len(flat)}")
    if spec.datatype == "BYTES":
        try:
            return [base64.b64decode(str(item), validate=True) for item in flat]
        except (binascii.Error, ValueError):
            raise _bad(f"input {spec.name!r}: BYTES elements in JSON must be base64 strings") from None
    try:
        return np.asarray(flat, dtype=np.float32)
    except (TypeError, ValueError):
        raise _bad(f"input {spec.name!r}: FP32 'data' must be numbers") from None


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def _from_binary(spec: InputSpec, raw: bytes, count: int) -> np.ndarray | list[bytes]:
    if spec.datatype == "BYTES":
        elements = _split_bytes_elements(raw, spec.name)
        if len(elements) != count:
            raise _bad(f"input {spec.name!r}: shape {spec.shape} needs {count} elements, the binary data holds "
                       f"{len(elements)}")
        return elements
    if len(raw) != 4 * count:
        raise _bad(f"input {spec.name!r}: shape {spec.shape} of FP32 needs {4 * count} bytes, binary_data_size is "
                   f"{len(raw)}")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def decode_request(body: bytes, header_length: str | None) -> tuple[InferRequest, list[Tensor]]:
    """Parse an infer request body into its JSON part and its input tensors.

    Raises:
        InvalidParameterError: malformed JSON, unknown datatypes, shapes that disagree with the data, or binary
            sizes that do not add up (400).
    """
    header, binary = _split(body, header_length)
    request = _parse_json(header)
    tensors, offset = [], 0
    for spec in request.inputs:
        if spec.datatype not in ("FP32", "BYTES"):
            raise _bad(f"input {spec.name!r} has datatype {spec.datatype}; this server takes FP32 or BYTES")
        if any(d < 0 for d in spec.shape):
            raise _bad(f"input {spec.name!r} has a negative dimension in shape {spec.shape}")
        count = math.prod(spec.shape)
        size = spec.parameters.get("binary_data_size")
        if size is None:
            values = _from_json_data(spec, count)
        else:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise _bad(f"input {spec.name!r}: binary_data_size {size!r} does not fit the {len(binary) - offset} "
                           "bytes left after the header")
            values = _from_binary(spec, binary[offset:offset + size], count)
            offset += size
        if isinstance(values, np.ndarray):
            values = values.reshape(spec.shape)
        tensors.append(Tensor(spec.name, spec.datatype, tuple(spec.shape), values))
    if offset != len(binary):
        raise _bad(f"{len(binary)} bytes follow the JSON header, but the inputs' binary_data_size add up to {offset}")
    return request, tensors


def encode_response(model: str, version: int, request_id: str | None,
                    outputs: list[OutputTensor]) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when any output is binary (None: plain JSON)."""
    described, blobs = [], []
    for output in outputs:
        entry: dict[str, Any] = {"name": output.name, "datatype": "FP32", "shape": list(output.values.shape)}
        if output.binary:
            blob = np.ascontiguousarray(output.values, dtype="<f4").tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = output.values.astype(np.float32).ravel().tolist()
        described.append(entry)
    document: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": described}
    if request_id is not None:
        document["id"] = request_id
    header = json.dumps(document, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
