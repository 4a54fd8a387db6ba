"""A small typed client of the labelserve HTTP API, synchronous (`Client`) and asynchronous (`AsyncClient`).

    from labelserve.client import Client

    with Client("http://127.0.0.1:8000") as client:
        answer = client.predict(["scene.jpg"], top_k=3)
    print(answer.results[0].predicted)

Answers are the response models the service itself declares (`labelserve.schemas`); every API error is raised as
`ApiError` with its status, code and message. A 503 (queue full, not ready) is retried after its `Retry-After`, a
bounded number of times. Imports neither the service nor torch: httpx, Pillow and pydantic only.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from PIL import Image

from labelserve.schemas import FeedbackResponse, ModelList, PredictResponse

__all__ = ["API_KEY_HEADER", "ApiError", "AsyncClient", "Client", "ImageInput"]

API_KEY_HEADER = "X-API-Key"
ImageInput = str | Path | bytes | Image.Image  # a file path, encoded image bytes, or a PIL image

_RETRY_STATUS = 503
_HTTP_MARGIN_S = 10.0  # the HTTP timeout exceeds the request's own deadline, so the server's 504 arrives


class ApiError(Exception):
    """An error answer of the API: HTTP `status`, the stable `code` (e.g. `unsupported_image`) and the message."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"{message} (HTTP {status}, {code})")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class _Upload:
    filename: str
    data: bytes


def _upload(image: ImageInput, index: int) -> _Upload:
    """Read one input into (filename, bytes); PIL images are sent as lossless PNG."""
    if isinstance(image, str | Path):
        path = Path(image)
        return _Upload(path.name, path.read_bytes())
    if isinstance(image, bytes | bytearray | memoryview):
        return _Upload(f"image{index}", bytes(image))
    if isinstance(image, Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return _Upload(f"image{index}.png", buffer.getvalue())
    raise TypeError(f"images must be paths, bytes or PIL images, got {type(image).__name__}")


def _uploads(images: ImageInput | Sequence[ImageInput]) -> list[_Upload]:
    items = [images] if isinstance(images, str | Path | bytes | bytearray | Image.Image) else list(images)
    if not items:
        raise ValueError("predict needs at least one image")
    return [_upload(image, index) for index, image in enumerate(items)]


def _form(model: str | None, version: int | None, top_k: int | None, threshold: float | None,
          attention: bool | Literal["png", "array"], timeout_s: float | None) -> dict[str, str]:
    fields = {"model": model, "version": version, "top_k": top_k, "threshold": threshold, "timeout_s": timeout_s}
    form = {name: str(value) for name, value in fields.items() if value is not None}
    form["attention"] = "true" if attention else "false"
    if isinstance(attention, str):
        form["attention_format"] = attention
    return form


def _files(uploads: list[_Upload]) -> list[tuple[str, tuple[str, bytes, str]]]:
    # octet-stream: the server recognises the format from the bytes, whatever the file is called
    return [("files", (upload.filename, upload.data, "application/octet-stream")) for upload in uploads]


def _feedback(answer_id: str, labels: Sequence[str] | None, confirm: Sequence[str],
              reject: Sequence[str]) -> dict[str, object]:
    if labels is not None:
        return {"id": answer_id, "labels": list(labels)}
    return {"id": answer_id, "confirm": list(confirm), "reject": list(reject)}


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _error(response: httpx.Response) -> ApiError:
    """The ApiError of an error response; a body that is not the API's JSON (a proxy's page) keeps its status."""
    try:
        body = response.json()
        code, message = str(body["code"]), str(body["error"])
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{response.status_code}", response.text[:200] or response.reason_phrase
    return ApiError(response.status_code, code, message, _retry_after_s(response))


def _parsed(response: httpx.Response,
            model: type[PredictResponse] | type[ModelList] | type[FeedbackResponse]) -> Any:
    if response.is_error:
        raise _error(response)
    return model.model_validate_json(response.content)


def _retry_wait_s(response: httpx.Response, attempt: int, max_retries: int, max_wait_s: float) -> float | None:
    """Seconds to wait before retrying a 503, or None when it is not retried (another status, retries used up)."""
    if response.status_code != _RETRY_STATUS or attempt >= max_retries:
        return None
    return min(max_wait_s, _retry_after_s(response) or 1.0)


class _Settings:
    """What both clients share: where, who, and how patiently."""

    def __init__(self, url: str, api_key: str | None, timeout_s: float, max_retries: int,
                 max_retry_wait_s: float) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.url = url.rstrip("/")
        self.headers = {API_KEY_HEADER: api_key} if api_key else {}
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_retry_wait_s = max_retry_wait_s

    def http_timeout(self, timeout_s: float | None) -> float:
        return (timeout_s + _HTTP_MARGIN_S) if timeout_s is not None else self.timeout_s


class Client:
    """Synchronous client; use as a context manager or call `close()`."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout_s: float = 60.0, max_retries: int = 3,
                 max_retry_wait_s: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        """Connect lazily to a labelserve server.

        Args:
            url: the server, e.g. `http://127.0.0.1:8000`.
            api_key: sent as `X-API-Key` when the server has `LABELSERVE_API_KEY` set.
            timeout_s: HTTP timeout of a request without its own `timeout_s`.
            max_retries: how often a 503 is retried (0: never).
            max_retry_wait_s: the longest wait between retries, whatever `Retry-After` says.
            transport: an httpx transport (e.g. for an ASGI app in tests); default: HTTP.
        """
        self._settings = _Settings(url, api_key, timeout_s, max_retries, max_retry_wait_s)
        self._http = httpx.Client(base_url=self._settings.url, headers=self._settings.headers, transport=transport)

    def predict(self, images: ImageInput | Sequence[ImageInput], *, top_k: int | None = None,
                threshold: float | None = None, attention: bool | Literal["png", "array"] = False,
                timeout_s: float | None = None, model: str | None = None,
                version: int | None = None) -> PredictResponse:
        """Label images: one result per image, in order.

        Args:
            images: one or more paths, encoded image bytes or PIL images.
            top_k: return only the k most probable labels per image.
            threshold: decide every label at this probability instead of the model's per-label thresholds.
            attention: also return the attention maps of the predicted labels: True or "png" as base64 PNGs in
                `attention` (see `labelserve.overlay.decode_attention`), "array" as the network's own `[h, w]` maps
                in `attention_maps`.
            timeout_s: the request's deadline on the server (504 past it); default the server's.
            model: model name; default the server's first model.
            version: model version; default the newest served.

        Raises:
            ApiError: the API answered with an error (after retrying 503s).
            httpx.TransportError: the server could not be reached.
        """
        uploads = _uploads(images)
        form = _form(model, version, top_k, threshold, attention, timeout_s)
        attempt = 0
        while True:
            response = self._http.post("/predict", data=form, files=_files(uploads),
                                       timeout=self._settings.http_timeout(timeout_s))
            wait_s = _retry_wait_s(response, attempt, self._settings.max_retries, self._settings.max_retry_wait_s)
            if wait_s is None:
                return _parsed(response, PredictResponse)
            attempt += 1
            time.sleep(wait_s)

    def models(self) -> ModelList:
        """The served models (GET /models)."""
        return _parsed(self._http.get("/models", timeout=self._settings.timeout_s), ModelList)

    def feedback(self, model: str, answer_id: str, *, labels: Sequence[str] | None = None,
                 confirm: Sequence[str] = (), reject: Sequence[str] = ()) -> FeedbackResponse:
        """Say what was really in an answered image: every present label (`labels`, the rest are absent), or some
        labels confirmed present and some rejected; the answer's `id` is in its `predict` result.

        Raises:
            ApiError: 404 for an id the server does not keep, 400 for an unknown label, ...
            httpx.TransportError: the server could not be reached.
        """
        response = self._http.post(f"/v2/models/{model}/feedback",
                                   json=_feedback(answer_id, labels, confirm, reject), timeout=self._settings.timeout_s)
        return _parsed(response, FeedbackResponse)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        """Use as a context manager: closed at the end of the block."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Close the connection pool."""
        self.close()


class AsyncClient:
    """Asynchronous client, the same calls as `Client` awaited; use as an async context manager or `aclose()`."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout_s: float = 60.0, max_retries: int = 3,
                 max_retry_wait_s: float = 10.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        """Arguments as for `Client`."""
        self._settings = _Settings(url, api_key, timeout_s, max_retries, max_retry_wait_s)
        self._http = httpx.AsyncClient(base_url=self._settings.url, headers=self._settings.headers,
                                       transport=transport)

    async def predict(self, images: ImageInput | Sequence[ImageInput], *, top_k: int | None = None,
                      threshold: float | None = None, attention: bool | Literal["png", "array"] = False,
                      timeout_s: float | None = None, model: str | None = None,
                      version: int | None = None) -> PredictResponse:
        """Label images; arguments, answer and errors as for `Client.predict`. Files are read before sending."""
        uploads = _uploads(images)
        form = _form(model, version, top_k, threshold, attention, timeout_s)
        attempt = 0
        while True:
            response = await self._http.post("/predict", data=form, files=_files(uploads),
                                             timeout=self._settings.http_timeout(timeout_s))
            wait_s = _retry_wait_s(response, attempt, self._settings.max_retries, self._settings.max_retry_wait_s)
            if wait_s is None:
                return _parsed(response, PredictResponse)
            attempt += 1
            await asyncio.sleep(wait_s)

    async def models(self) -> ModelList:
        """The served models (GET /models)."""
        return _parsed(await self._http.get("/models", timeout=self._settings.timeout_s), ModelList)

    async def feedback(self, model: str, answer_id: str, *, labels: Sequence[str] | None = None,
                       confirm: Sequence[str] = (), reject: Sequence[str] = ()) -> FeedbackResponse:
        """Say what was really in an answered image; as `Client.feedback`."""
        response = await self._http.post(f"/v2/models/{model}/feedback",
                                         json=_feedback(answer_id, labels, confirm, reject),
                                         timeout=self._settings.timeout_s)
        return _parsed(response, FeedbackResponse)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        """Use as an async context manager: closed at the end of the block."""
        return self

    async def __aexit__(self, *_exc: object) -> None:
        """Close the connection pool."""
        await self.aclose()
