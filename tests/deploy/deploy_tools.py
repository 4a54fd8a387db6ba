"""Helpers of the deploy tests (imported by name: this folder is on sys.path under pytest)."""

from __future__ import annotations

import shutil
import socket

import pytest


def tool(name: str) -> str:
    """Path of a command-line tool the deploy tests need; a clear failure when it is missing."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: `make test` installs it (Debian package `prometheus`)")
    return found


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
