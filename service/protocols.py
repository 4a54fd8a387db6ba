"""The protocols the server speaks, each an adapter that owns its endpoints and its codec.

/predict (service.routes.predict) and OIP over HTTP (service.oip.routes) are HTTP adapters; OIP over gRPC
(service.oip_grpc) listens on a port of its own. Every adapter turns its wire format into jobs for the model's
`Predictor` and its outputs back into its wire format; what applies to every request (admission to the compute
gate, deadlines, the API key, metrics, access logs) is applied once, outside them: for HTTP by the middleware, which
asks each adapter here which of its requests cost model time, rather than keeping a list of routes itself.
"""

from __future__ import annotations

from starlette.types import Scope

from service.oip.routes import is_inference_path as oip_infer
from service.routes.predict import is_inference_path as predict

__all__ = ["is_inference"]

_INFERENCE_PATHS = (predict, oip_infer)


def is_inference(scope: Scope) -> bool:
    """Whether an HTTP request costs model time: a POST that one of the adapters says is an inference."""
    if scope["type"] != "http" or scope.get("method") != "POST":
        return False
    path: str = scope.get("path", "")
    return any(matches(path) for matches in _INFERENCE_PATHS)
