"""What the session's demo build (the `demo` fixture) hands to the tests that need a model that has learnt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labelserve.bundle import Bundle

__all__ = ["DemoBuild"]


@dataclass(frozen=True)
class DemoBuild:
    """The demo model as `make serve` builds it, in a temporary repository: where, from what, and how long it took."""

    repository: Path
    workdir: Path
    data_dir: Path
    bundle: Bundle
    build_minutes: float
