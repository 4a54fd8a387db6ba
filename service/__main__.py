"""`python -m service`: serve the model repository with uvicorn, configured from `LABELSERVE_*` variables."""

from __future__ import annotations

import logging
import signal
import sys
from importlib.util import find_spec
from types import FrameType

import uvicorn

from service.app import create_app
from service.observability import configure_logging
from service.settings import get_settings

__all__ = ["main"]

logger = logging.getLogger("service")


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    sys.exit(0)


def main() -> None:
    """Read settings, set up JSON logging and run uvicorn until SIGINT/SIGTERM (which drain in-flight work)."""
    settings = get_settings()
    configure_logging(settings.log_level)
    # uvicorn drains on SIGTERM, then re-raises the signal to the handler that was installed before it started;
    # this one turns that into exit code 0, so orchestrators see a drained stop as a success, not a kill.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    # the serve extra installs uvloop and httptools (less CPU per request than asyncio and h11); named explicitly so
    # the log says what runs instead of uvicorn choosing silently
    loop = "uvloop" if find_spec("uvloop") else "asyncio"
    http = "httptools" if find_spec("httptools") else "h11"
    logger.info("event loop %s, HTTP parser %s", loop, http)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                log_level=settings.log_level.lower(), access_log=False, loop=loop, http=http,
                timeout_graceful_shutdown=settings.drain_timeout_s)


if __name__ == "__main__":
    main()
