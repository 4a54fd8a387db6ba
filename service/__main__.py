"""`python -m service`: serve the model repository with uvicorn, configured from `LABELSERVE_*` variables."""

from __future__ import annotations

import uvicorn

from service.app import create_app
from service.observability import configure_logging
from service.settings import get_settings

__all__ = ["main"]


def main() -> None:
    """Read settings, set up JSON logging and run uvicorn until SIGINT/SIGTERM (which drain in-flight work)."""
    settings = get_settings()
    configure_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                log_level=settings.log_level.lower(), access_log=False,
                timeout_graceful_shutdown=settings.drain_timeout_s)


if __name__ == "__main__":
    main()
