"""Fuzzing the bodies of the routes that read them themselves, against a real server, beyond what the OpenAPI schema
describes: the Open Inference Protocol's (wrong types in every field, huge and non-finite numbers, deep nesting,
shapes that disagree with the data, binary parts that do not add up) and /predict's multipart form (broken syntax,
odd headers, wrong field values). Every malformed body gets a 4xx with the JSON error body; a well-formed one is
answered 200; nothing reaches an unhandled exception."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelserve_tools.local_server import ServerProcess

pytestmark = pytest.mark.e2e

EXAMPLES = 200
CLIENT_ERRORS = {400, 404, 413, 415}

_numbers = st.one_of(st.integers(min_value=-(10**400), max_value=10**400), st.floats(allow_nan=True),
                     st.sampled_from([0, 1, -1, 2**31, 2**63, 1e39, -1e39, 1e308]))
_scalars = st.one_of(st.none(), st.booleans(), _numbers, st.text(max_size=12))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_shape = st.one_of(st.lists(st.integers(min_value=-3, max_value=6), max_size=5),
                   st.lists(st.sampled_from([0, 1, 3, 64, 2**31 - 1, 2**31, 10**30]), max_size=10), _json)
_data = st.one_of(_json, st.lists(_numbers, max_size=20),
                  st.lists(st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()), max_size=3),
                  st.integers(min_value=1, max_value=50).map(lambda depth: _nested(depth)))


def _nested(depth: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(depth - 1):
        nested = [nested]
    return nested


def _deeply_nested_body(depth: int, inside_data: bool) -> bytes:
    """`[[[...]]]` of `depth` levels, alone or as an input's data: built as text, since json.dumps recurses too."""
    nesting = b"[" * depth + b"]" * depth
    if not inside_data:
        return nesting
    return b'{"inputs": [{"name": "images", "shape": [1, 3, 64, 64], "datatype": "FP32", "data": ' + nesting + b"}]}"


@st.composite
def _input(draw: st.DrawFn) -> Any:
    spec: dict[str, Any] = {
        "name": draw(st.sampled_from(["images", "image_bytes", "", "other"]) | _json),
        "shape": draw(_shape),
        "datatype": draw(st.sampled_from(["FP32", "BYTES", "INT8", "fp32"]) | _json),
    }
    if draw(st.booleans()):
        spec["data"] = draw(_data)
    if draw(st.booleans()):
        spec["parameters"] = draw(st.fixed_dictionaries({}, optional={"binary_data_size": _json | _numbers}) | _json)
    return draw(st.just(spec) | _json) if draw(st.integers(0, 9)) == 0 else spec


@st.composite
def _consistent_input(draw: st.DrawFn) -> dict[str, Any]:
    """An input whose shape agrees with its data's length, so the checks behind the count check are reached."""
    name, datatype = draw(st.sampled_from([("images", "FP32"), ("image_bytes", "BYTES"), ("images", "BYTES"),
                                           ("image_bytes", "FP32")]))
    data = draw(st.lists(_scalars | st.lists(_scalars, max_size=2), min_size=1, max_size=6))
    return {"name": name, "datatype": datatype, "data": data,
            "shape": draw(st.sampled_from([[len(data)], [1, len(data)], [len(data), 1, 1, 1]]))}


@st.composite
def _document(draw: st.DrawFn) -> Any:
    document: dict[str, Any] = {"inputs": draw(st.lists(_input() | _consistent_input(), max_size=3) | _json)}
    for key, values in (("id", _json), ("parameters", st.fixed_dictionaries(
            {}, optional={"binary_data_output": _json}) | _json),
            ("outputs", st.lists(st.fixed_dictionaries({"name": st.sampled_from(["probabilities", "logits",
                                                                                 "attention", "x"]) | _json},
                                                       optional={"parameters": _json}), max_size=3) | _json)):
        if draw(st.booleans()):
            document[key] = draw(values)
    return document if draw(st.integers(0, 9)) else draw(_json)


@st.composite
def _body(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """An infer body: JSON alone, or JSON plus binary data with an Inference-Header-Content-Length that may lie."""
    header = json.dumps(draw(_document())).encode()  # NaN and Infinity go out as the bare literals json emits
    kind = draw(st.integers(0, 19))
    if kind == 0:
        header = draw(st.binary(max_size=64))
    elif kind == 1:
        header = _deeply_nested_body(draw(st.sampled_from([10, 900, 5_000, 100_000])), inside_data=draw(st.booleans()))
    binary = draw(st.binary(max_size=64)) if draw(st.booleans()) else b""
    headers = {}
    if binary or draw(st.booleans()):
        length = draw(st.sampled_from([len(header), 0, -1, len(header) + len(binary) + 1])
                      | st.integers(0, len(header) + len(binary)))
        headers["Inference-Header-Content-Length"] = draw(st.just(str(length)) | st.text(max_size=6))
    return header + binary, headers


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def _assert_answered(response: httpx.Response, allowed: set[int]) -> None:
    sent = response.request.content[:300] if response.request.method == "POST" else response.request.url
    assert response.status_code in allowed, f"{sent!r} -> {response.status_code}: {response.text[:300]}"
    if response.status_code < 400:
        return
    body = response.json()
    assert set(body) == {"error", "code"} and body["error"], body
    assert response.headers["X-Error-Code"] == body["code"]


@given(body=_body())
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_fuzzed_infer_bodies_get_a_json_answer_never_a_server_error(http: httpx.Client,
                                                                    body: tuple[bytes, dict[str, str]]) -> None:
    content, headers = body
    headers = {k: v for k, v in headers.items() if v.isprintable() and v.isascii()}
    _assert_answered(http.post("/v2/models/tiny/infer", content=content, headers=headers), CLIENT_ERRORS | {200})


@given(document=_json | st.binary(max_size=40))
@settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_fuzzed_repository_index_bodies(http: httpx.Client, document: Any) -> None:
    content = document if isinstance(document, bytes) else json.dumps(document).encode()
    _assert_answered(http.post("/v2/repository/index", content=content), {200, 400})


@given(segment=st.text(min_size=1, max_size=30).filter(lambda t: "/" not in t and t not in (".", "..")))
@settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_fuzzed_model_and_version_segments(http: httpx.Client, segment: str) -> None:
    for path in (f"/v2/models/{quote(segment)}", f"/v2/models/tiny/versions/{quote(segment)}",
                 f"/v2/models/tiny/versions/{quote(segment)}/ready"):
        response = http.get(path)
        assert response.status_code in {200, 400, 404}, f"{path} -> {response.status_code}: {response.text[:300]}"
        if response.status_code >= 400:
            _assert_answered(response, {400, 404})


_FIELDS = st.sampled_from(["files", "top_k", "threshold", "attention", "model", "version", "timeout_s", "other", ""])
_VALUES = st.one_of(st.binary(max_size=40), st.sampled_from([b"1", b"0", b"-1", b"true", b"nan", b"1e999", b"tiny",
                                                              b"9" * 400, b"\xff\xfe", b""]))


@st.composite
def _multipart(draw: st.DrawFn, jpeg: bytes) -> tuple[bytes, str]:
    """A multipart body, well-formed or broken in one of many ways, and its content type."""
    boundary = draw(st.sampled_from([b"xYz", b"a" * 70, b"--", b"b"]))
    chunks = []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(_FIELDS).encode()
        disposition = b'form-data; name="' + name + b'"'
        if draw(st.booleans()):
            disposition += b'; filename="' + draw(st.sampled_from([b"a.jpg", b"", b"\xff.png", b"x\"y"])) + b'"'
        headers = [b"Content-Disposition: " + draw(st.sampled_from([disposition, b"attachment", b"form-data"]))]
        if draw(st.booleans()):
            headers.append(b"Content-Type: " + draw(st.sampled_from([b"image/jpeg", b"text/plain", b"", b"\x00"])))
        if draw(st.integers(0, 9)) == 0:
            headers.append(draw(st.binary(max_size=20)))
        data = jpeg if name == b"files" and draw(st.booleans()) else draw(_VALUES)
        chunks.append(b"--" + boundary + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + data + b"\r\n")
    body = b"".join(chunks) + (b"--" + boundary + b"--\r\n" if draw(st.booleans()) else b"")
    if draw(st.integers(0, 4)) == 0:
        cut = draw(st.integers(0, len(body)))
        body = body[:cut] + draw(st.binary(max_size=10)) + body[cut + draw(st.integers(0, 10)):]
    content_type = draw(st.sampled_from([f"multipart/form-data; boundary={boundary.decode()}",
                                         f'multipart/form-data; boundary="{boundary.decode()}"',
                                         "multipart/form-data", "multipart/form-data; boundary=",
                                         "multipart/form-data; boundary=" + "c" * 80, "text/plain", ""]))
    return body, content_type


@pytest.fixture(scope="module")
def scene_jpeg(val_jpegs: list[tuple[str, bytes]]) -> bytes:
    return val_jpegs[0][1]


@given(data=st.data())
@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_fuzzed_predict_forms_get_a_json_answer_never_a_server_error(http: httpx.Client, scene_jpeg: bytes,
                                                                     data: st.DataObject) -> None:
    body, content_type = data.draw(_multipart(scene_jpeg))
    response = http.post("/predict", content=body, headers={"Content-Type": content_type} if content_type else {})
    _assert_answered(response, CLIENT_ERRORS | {200, 422})


def test_the_server_logged_no_unhandled_error(server: ServerProcess) -> None:
    assert "unhandled error" not in server.log()
