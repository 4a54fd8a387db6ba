"""Request body size limit, enforced before any parsing.

A declared `Content-Length` above the limit is refused at once, without reading the body. Bodies without one
(chunked uploads) are counted while they stream in, and reading stops at the first byte over the limit.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import InvalidParameterError, RequestTooLargeError, error_response

__all__ = ["RequestSizeLimitMiddleware"]


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError as exc:
                raise InvalidParameterError(f"Content-Length header {value!r} is not an integer") from exc
    return None


class RequestSizeLimitMiddleware:
    """Answer 413 for request bodies over `max_request_bytes`."""

    def __init__(self, app: ASGIApp, max_request_bytes: int) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes

    def _too_large(self, size: int | str) -> RequestTooLargeError:
        return RequestTooLargeError(f"request body of {size} bytes is over the limit of {self.max_request_bytes} "
                                    "bytes (LABELSERVE_MAX_REQUEST_BYTES); send fewer or smaller images")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then count the streamed bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            declared = _content_length(scope)
        except InvalidParameterError as error:
            await error_response(error)(scope, receive, send)
            return
        if declared is not None and declared > self.max_request_bytes:
            await error_response(self._too_large(declared))(scope, receive, send)
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_request_bytes:
                    raise self._too_large(f"at least {received}")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except RequestTooLargeError as error:
            if response_started:
                raise
            await error_response(error)(scope, receive, send)
