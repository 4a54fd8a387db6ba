"""The multipart/form-data splitter of /predict: what real clients send parses exactly, every malformed body is a 400
with the JSON error body (through the app), and a non-multipart body a 415."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from service_testing import assert_error

from service.errors import MalformedRequestError, UnsupportedMediaTypeError
from service.multipart import boundary_of, parse_form


def _encoded_by_httpx(files: list, data: dict[str, str]) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://x/predict", files=files, data=data)
    return request.read(), request.headers["content-type"]


def test_a_body_encoded_by_httpx_parses_to_its_fields_and_files() -> None:
    jpeg = bytes(range(256)) * 40 + b"\r\n--not-the-boundary\r\n"  # binary content with CRLFs and dashes
    body, content_type = _encoded_by_httpx(
        [("files", ("a b;c.jpg", jpeg, "image/jpeg")), ("files", ("two.png", b"\x89PNG", "image/png"))],
        {"top_k": "3", "model": "démo"})
    parts = parse_form(body, boundary_of(content_type))
    fields = {p.name: p.data for p in parts if p.filename is None}
    files = [p for p in parts if p.name == "files"]
    assert fields == {"top_k": b"3", "model": "démo".encode()}
    assert [(f.filename, f.content_type, f.data) for f in files] == [("a b;c.jpg", "image/jpeg", jpeg),
                                                                     ("two.png", "image/png", b"\x89PNG")]


def test_preamble_epilogue_quoted_boundary_and_padding_are_accepted() -> None:
    body = (b"preamble\r\n--b=1 2\t \r\nContent-Disposition: form-data; name=\"files\"\r\n\r\nDATA\r\n"
            b"--b=1 2--\r\nepilogue")
    parts = parse_form(body, boundary_of('multipart/form-data; boundary="b=1 2"'))
    assert [(p.name, p.filename, p.content_type, p.data) for p in parts] == [("files", None, None, b"DATA")]


@pytest.mark.parametrize("content_type", ["application/json", "", "multipart/mixed; boundary=x", "image/jpeg"])
def test_other_content_types_are_refused(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="multipart/form-data"):
        boundary_of(content_type)


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=",
                                          "multipart/form-data; boundary=" + "x" * 71])
def test_a_missing_or_overlong_boundary_is_malformed(content_type: str) -> None:
    with pytest.raises(MalformedRequestError, match="boundary"):
        boundary_of(content_type)


HEAD = b'--B\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n'


@pytest.mark.parametrize(("body", "fragment"), [
    (b"", "does not contain its boundary"),
    (b"no boundary at all", "does not contain its boundary"),
    (b"--Bjunk\r\n\r\nx\r\n--B--", "not followed by a line break"),
    (HEAD + b"x\r\n--B--", "not terminated by an empty line"),
    (HEAD + b"\r\nDATA without a closing boundary", "ends before its closing boundary"),
    (b"--B\r\nno colon here\r\n\r\nx\r\n--B--", "without a colon"),
    (b"--B\r\n\r\nx\r\n--B--", "no Content-Disposition"),
    (b"--B\r\nContent-Type: image/jpeg\r\n\r\nx\r\n--B--", "no Content-Disposition"),
    (b'--B\r\nContent-Disposition: attachment; name="files"\r\n\r\nx\r\n--B--', "form-data; name="),
    (b"--B\r\nContent-Disposition: form-data\r\n\r\nx\r\n--B--", "form-data; name="),
    (b"".join(b'--B\r\nContent-Disposition: form-data; name="f"\r\n\r\n\r\n' for _ in range(1001)) + b"--B--",
     "at most 1000 parts"),
])
def test_malformed_bodies_raise_with_the_reason(body: bytes, fragment: str) -> None:
    with pytest.raises(MalformedRequestError, match=fragment):
        parse_form(body, b"B")


def test_a_malformed_body_is_a_json_400_and_the_app_keeps_serving(client: TestClient,
                                                                   val_jpegs: list[tuple[str, bytes]]) -> None:
    broken = client.post("/predict", content=HEAD + b"\r\nno closing boundary",
                         headers={"content-type": "multipart/form-data; boundary=B"})
    assert_error(broken, 400, "malformed_request", "closing boundary")
    no_boundary = client.post("/predict", content=b"x", headers={"content-type": "multipart/form-data"})
    assert_error(no_boundary, 400, "malformed_request", "boundary")
    name, data = val_jpegs[0]
    assert client.post("/predict", files=[("files", (name, data, "image/jpeg"))]).status_code == 200


def test_empty_fields_count_as_absent_like_an_html_form(client: TestClient,
                                                        val_jpegs: list[tuple[str, bytes]]) -> None:
    name, data = val_jpegs[0]
    response = client.post("/predict", files=[("files", (name, data, "image/jpeg"))],
                           data={"top_k": "", "threshold": "", "model": ""})
    assert response.status_code == 200, response.text
    assert len(response.json()["results"][0]["labels"]) > 1
