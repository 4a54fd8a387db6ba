"""`serve(settings)`: the one way the server starts, whichever command starts it.

`python -m service` and `labelserve serve` both call it: JSON logging, then one uvicorn process
(`LABELSERVE_WORKERS=1`, the default) or a supervisor with N worker processes on one port (`service.workers`).
"""

from __future__ import annotations

import logging

import uvicorn

from service.app import create_app
from service.http import raise_open_file_limit
from service.observability import configure_logging
from service.settings import Settings
from service.uvicorn_config import event_loop_and_parser, return_after_drain, uvicorn_config
from service.workers import run_workers

__all__ = ["serve"]

logger = logging.getLogger("service")


def serve(settings: Settings) -> int:
    """Serve until SIGTERM or SIGINT, which drain in-flight work; returns the exit code (0 after a clean drain)."""
    configure_logging(settings.log_level)
    logger.info("event loop %s, HTTP parser %s", *event_loop_and_parser())
    before, after = raise_open_file_limit()  # workers inherit it
    logger.info("open-file limit %d%s", after, f" (raised from {before})" if after != before else "")
    if settings.workers > 1:
        return run_workers(settings)
    return_after_drain()
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    server.run()
    if not server.started:
        logger.error("the server stopped before it started serving")
        return 1
    return 0
