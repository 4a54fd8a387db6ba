"""A model version as it appears in an Open Inference Protocol path (`/versions/{version}/...`)."""

from __future__ import annotations

import re

from service.errors import InvalidParameterError

__all__ = ["parse_version"]

_VERSION = re.compile(r"[1-9][0-9]{0,17}")  # ASCII digits only: str.isdigit() also takes '²', which int() refuses


def parse_version(text: str | None) -> int | None:
    """The version number of a path segment (None when the path names none).

    Raises:
        InvalidParameterError: not a positive integer (400).
    """
    if text is None:
        return None
    if not _VERSION.fullmatch(text):
        raise InvalidParameterError(f"model version must be a positive integer, got {text[:40]!r}")
    return int(text)
