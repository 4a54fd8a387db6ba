"""`multipart/form-data` bodies (RFC 7578) split in one pass over bytes already in memory.

/predict reads its whole body anyway (capped by LABELSERVE_MAX_REQUEST_BYTES before any parsing), so finding the
boundaries with `bytes.find` costs microseconds per part. The streaming parser behind FastAPI's form parameters
(python-multipart's callbacks, a spooled temporary file per upload, FastAPI's dependency solving around it) was a
tenth of the event loop's time per request on the demo model, and the event loop is what caps a CPU server.
"""

from __future__ import annotations

from dataclasses import dataclass

from python_multipart.multipart import parse_options_header

from service.errors import MalformedRequestError, UnsupportedMediaTypeError

__all__ = ["Part", "boundary_of", "parse_form"]

_HEADER_END = b"\r\n\r\n"
_MAX_PARTS = 1000  # a body of many tiny parts is refused before it costs more than its size


@dataclass(frozen=True)
class Part:
    """One part of a form: its field name, the filename and content type it was sent with (None when absent)."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def boundary_of(content_type: str) -> bytes:
    """The boundary of a `multipart/form-data` content type.

    Raises:
        UnsupportedMediaTypeError: the body is not multipart/form-data (415).
        MalformedRequestError: it is, but names no usable boundary (400).
    """
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise UnsupportedMediaTypeError(f"send images as multipart/form-data in the field 'files', not as "
                                        f"{content_type or 'a body without a content type'}")
    boundary = options.get(b"boundary", b"")
    if not 1 <= len(boundary) <= 70:
        raise MalformedRequestError("the multipart/form-data content type needs a boundary of 1 to 70 characters")
    return boundary


def _part_headers(block: bytes) -> tuple[str, str | None, str | None]:
    """(field name, filename, content type) from a part's header block."""
    name = filename = content_type = None
    for line in block.split(b"\r\n") if block else []:
        key, colon, value = line.partition(b":")
        if not colon:
            raise MalformedRequestError(f"a multipart part has a header line without a colon: {line[:60]!r}")
        key = key.strip().lower()
        if key == b"content-disposition":
            disposition, options = parse_options_header(value.strip())
            if disposition != b"form-data" or b"name" not in options:
                raise MalformedRequestError("every multipart part needs 'Content-Disposition: form-data; name=...'")
            name = options[b"name"].decode("utf-8", "replace")
            if b"filename" in options:
                filename = options[b"filename"].decode("utf-8", "replace")
        elif key == b"content-type":
            content_type = value.strip().decode("latin-1").lower()
    if name is None:
        raise MalformedRequestError("a multipart part has no Content-Disposition header")
    return name, filename, content_type


def parse_form(body: bytes, boundary: bytes) -> list[Part]:
    """Every part of a multipart body, in order.

    Raises:
        MalformedRequestError: the body does not follow the multipart syntax for this boundary (400).
    """
    delimiter = b"\r\n--" + boundary
    body = b"\r\n" + body  # the first delimiter may open the body without a line break before it
    position = body.find(delimiter)
    if position < 0:
        raise MalformedRequestError("the multipart body does not contain its boundary")
    parts: list[Part] = []
    while True:
        position += len(delimiter)
        if body.startswith(b"--", position):
            return parts  # the closing delimiter; anything after it is an epilogue
        line_end = body.find(b"\r\n", position)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise MalformedRequestError("a multipart boundary line is not followed by a line break")
        headers_end = body.find(_HEADER_END, line_end)
        if headers_end < 0:
            raise MalformedRequestError("a multipart part's headers are not terminated by an empty line")
        next_delimiter = body.find(delimiter, headers_end + len(_HEADER_END))
        if next_delimiter < 0:
            raise MalformedRequestError("the multipart body ends before its closing boundary")
        name, filename, content_type = _part_headers(body[line_end + 2:headers_end])
        parts.append(Part(name, filename, content_type, body[headers_end + len(_HEADER_END):next_delimiter]))
        if len(parts) > _MAX_PARTS:
            raise MalformedRequestError(f"a multipart body may have at most {_MAX_PARTS} parts")
        position = next_delimiter
