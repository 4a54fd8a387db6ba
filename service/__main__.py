"""`python -m service`: serve the model repository with uvicorn, configured from `LABELSERVE_*` variables."""

from __future__ import annotations

import signal
import sys
from types import FrameType

import uvicorn

from service.app import create_app
from service.observability import configure_logging
from service.settings import get_settings

__all__ = ["main"]


def _exit_cleanly(signum: int, _frame: FrameType | None) -> None:
    sys.exit(0)


def main() -> None:
    """Read settings, set up JSON logging and run uvicorn until SIGINT/SIGTERM (which drain in-flight work)."""
    settings = get_settings()
    configure_logging(settings.log_level)
    # uvicorn drains on SIGTERM, then re-raises the signal to the handler that was installed before it started;
    # this one turns that into exit code 0, so orchestrators see a drained stop as a success, not a kill.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                log_level=settings.log_level.lower(), access_log=False,
                timeout_graceful_shutdown=settings.drain_timeout_s)


if __name__ == "__main__":
    main()
