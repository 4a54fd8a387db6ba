"""`python -m service`: serve the model repository, configured from `LABELSERVE_*` variables (`service.server`)."""

from __future__ import annotations

import sys

from service.server import serve
from service.settings import get_settings

__all__ = ["main"]


def main() -> None:
    """Serve until SIGINT/SIGTERM, which drain in-flight work; exit code 0 after a clean drain."""
    sys.exit(serve(get_settings()))


if __name__ == "__main__":
    main()
