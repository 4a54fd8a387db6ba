"""Open Inference Protocol v2 bodies <-> tensors, including Triton's binary tensor data extension.

A request body is JSON, or (binary extension) JSON of `Inference-Header-Content-Length` bytes followed by the raw
bytes of every input whose `parameters.binary_data_size` is set, in input order. FP32 tensors are little-endian
float32; a BYTES tensor is a sequence of elements, each a 4-byte little-endian length and then the bytes. In plain
JSON, BYTES elements are base64 strings (JPEG bytes are not valid UTF-8 text).
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import InvalidParameterError

__all__ = ["HEADER_LENGTH", "InferRequest", "InputSpec", "OutputTensor", "RequestedOutput", "Tensor",
           "decode_request", "decode_tensor", "encode_response", "load_json"]

HEADER_LENGTH = "Inference-Header-Content-Length"
_LENGTH = struct.Struct("<I")
_MAX_RANK = 8  # bounds the work a shape alone can ask for (math.prod of a million huge numbers, ndarray limits)
_MAX_DIMENSION = 2**31 - 1


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


def load_json(raw: bytes, what: str) -> Any:
    """Parse a JSON document from a client.

    Raises:
        InvalidParameterError: not UTF-8, not JSON, or nested too deeply for the decoder (a body of a few hundred
            KB of `[[[...` is refused by the decoder, never a server error).
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # also invalid UTF-8 and nesting past orjson's limit (1024)
        raise _bad(f"{what} is not valid JSON: {exc}") from None


def _parse_json(header: bytes) -> InferRequest:
    document = load_json(header, "the request header")
    try:
        return InferRequest.model_validate(document)
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
    flat = _flatten(spec.data, max_depth=max(1, len(spec.shape)), name=spec.name)
    if len(flat) != count:
        raise _bad(f"input {spec.name!r}: shape {spec.shape} needs {count} values, 'data' has {len(flat)}")
    if spec.datatype == "BYTES":
        if not all(isinstance(item, str) for item in flat):
            raise _bad(f"input {spec.name!r}: BYTES elements in JSON must be base64 strings")
        try:
            return [base64.b64decode(item, validate=True) for item in flat]
        except (binascii.Error, ValueError):
            raise _bad(f"input {spec.name!r}: BYTES elements in JSON must be base64 strings") from None
    if not all(isinstance(item, int | float) and not isinstance(item, bool) for item in flat):
        raise _bad(f"input {spec.name!r}: FP32 'data' must be numbers")
    try:
        values = np.asarray(flat, dtype=np.float64)  # ints past float64's range raise OverflowError here
    except OverflowError:
        raise _bad(f"input {spec.name!r}: FP32 'data' holds a number too large for a float") from None
    return values  # checked and narrowed to float32 by decode_tensor


def _finite_float32(values: np.ndarray, name: str) -> np.ndarray:
    """Refuse NaN and values outside float32's range: the network would answer NaN, which JSON cannot carry."""
    with np.errstate(over="ignore", invalid="ignore"):
        as_float32 = values.astype(np.float32)
    if not np.isfinite(as_float32).all():
        raise _bad(f"input {name!r}: FP32 data must be finite numbers within float32's range (no NaN or infinity)")
    return as_float32


def _flatten(data: list[Any], max_depth: int, name: str) -> list[Any]:
    """The leaves of `data`, nested at most `max_depth` lists deep (the tensor's rank); iterative, so no nesting
    can exhaust the stack."""
    out: list[Any] = []
    stack: list[tuple[Iterator[Any], int]] = [(iter(data), 1)]
    while stack:
        items, depth = stack[-1]
        for item in items:
            if isinstance(item, list):
                if depth >= max_depth:
                    raise _bad(f"input {name!r}: 'data' is nested deeper than the {max_depth} dimensions of its "
                               "shape")
                stack.append((iter(item), depth + 1))
                break
            out.append(item)
        else:
            stack.pop()
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
    return np.frombuffer(raw, dtype="<f4")  # checked by decode_tensor


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
        size = spec.parameters.get("binary_data_size")
        raw = None
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
                raise _bad(f"input {spec.name!r}: binary_data_size {size!r} does not fit the {len(binary) - offset} "
                           "bytes left after the header")
            raw = binary[offset:offset + size]
            offset += size
        tensors.append(decode_tensor(spec, raw, lambda spec: _from_json_data(spec, math.prod(spec.shape))))
    if offset != len(binary):
        raise _bad(f"{len(binary)} bytes follow the JSON header, but the inputs' binary_data_size add up to {offset}")
    return request, tensors


def decode_tensor(spec: InputSpec, raw: bytes | None,
                  typed: Callable[[InputSpec], np.ndarray | list[bytes]]) -> Tensor:
    """One input, from its raw bytes (the binary layout, shared by HTTP's binary extension and gRPC's raw contents)
    or, without them, from its typed values (`typed`: JSON `data`, gRPC `contents`), checked against its shape.

    Raises:
        InvalidParameterError: an unsupported datatype, a shape out of bounds, values that do not fill the shape,
            NaN or infinity (400).
    """
    if spec.datatype not in ("FP32", "BYTES"):
        raise _bad(f"input {spec.name!r} has datatype {spec.datatype}; this server takes FP32 or BYTES")
    if any(d < 0 for d in spec.shape):
        raise _bad(f"input {spec.name!r} has a negative dimension in shape {spec.shape}")
    if len(spec.shape) > _MAX_RANK or any(d > _MAX_DIMENSION for d in spec.shape):
        raise _bad(f"input {spec.name!r}: shape {str(spec.shape)[:100]} has more than {_MAX_RANK} dimensions "
                   f"or one over {_MAX_DIMENSION}")
    values = _from_binary(spec, raw, math.prod(spec.shape)) if raw is not None else typed(spec)
    if isinstance(values, np.ndarray):
        values = _finite_float32(values, spec.name)
        try:
            values = values.reshape(spec.shape)
        except ValueError as exc:  # an empty tensor whose other dimensions are too large for NumPy
            raise _bad(f"input {spec.name!r} cannot have shape {spec.shape}: {exc}") from None
    return Tensor(spec.name, spec.datatype, tuple(spec.shape), values)


def encode_response(model: str, version: int, request_id: str | None, outputs: list[OutputTensor],
                    parameters: dict[str, Any] | None = None) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when any output is binary (None: plain JSON)."""
    described, blobs = [], []
    for output in outputs:
        entry: dict[str, Any] = {"name": output.name, "datatype": "FP32", "shape": list(output.values.shape)}
        if output.binary:
            blob = np.ascontiguousarray(output.values, dtype="<f4").tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = np.ascontiguousarray(output.values, dtype=np.float32).ravel()  # orjson writes it as is
        described.append(entry)
    document: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": described}
    if request_id is not None:
        document["id"] = request_id
    if parameters:
        document["parameters"] = parameters
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
