"""The Open Inference Protocol v2 (KServe / Triton REST) beside `/predict`."""

from service.oip.routes import router

__all__ = ["router"]
