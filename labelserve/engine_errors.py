"""`EngineLoadError`: an inference engine could not be created or warmed up (bad file, wrong inputs, missing runtime).

In the shared core because the TensorRT plan runner (`labelserve.plan_runner`) raises it both where the service
loads a plan and where export checks one; `service.engines` re-exports it for every backend.
"""

from __future__ import annotations

__all__ = ["EngineLoadError"]


class EngineLoadError(Exception):
    """An engine could not be created or warmed up (bad file, wrong inputs, missing runtime)."""
