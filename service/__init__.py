"""The labelserve HTTP service: FastAPI app, dynamic batcher, engines, image pipeline, metrics.

Build an app with `service.app.create_app(settings)`; run one with `python -m service`. Nothing here imports torch,
`training` or `export`: the service only needs a model bundle (see `labelserve.bundle`).
"""

__all__: list[str] = []
