"""A real PostgreSQL server for the tests, started from Debian's `postgresql` package in a temporary folder.

`initdb` then `pg_ctl start` on a free port of 127.0.0.1, as an unprivileged user (PostgreSQL refuses to run as
root: under root the tests run it as `nobody`); trust authentication on loopback, nothing persists after `stop`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "start_postgres"]


@dataclass
class PostgresServer:
    """A running server: its URL, and how to stop it."""

    url: str
    data_dir: Path
    bin_dir: Path
    user: str | None

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its files."""
        _run([self.bin_dir / "pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop"], self.user)
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def _bin_dir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0)
    if not candidates:
        pytest.fail("PostgreSQL is missing: `make test` installs Debian's postgresql (apt-get install postgresql)")
    return candidates[-1].parent


def _run(command: list[object], user: str | None) -> None:
    result = subprocess.run([str(part) for part in command], user=user, capture_output=True, text=True,
                            timeout=120, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_postgres() -> PostgresServer:
    """initdb, start, and return once the server accepts connections."""
    bin_dir = _bin_dir()
    user = "nobody" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="labelserve-postgres-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    data_dir = root / "data"
    _run([bin_dir / "initdb", "-D", data_dir, "-U", "labelserve", "--auth=trust", "-E", "UTF8", "--no-sync"], user)
    port = _free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=on"
    _run([bin_dir / "pg_ctl", "-D", data_dir, "-o", options, "-l", root / "server.log", "-w", "-t", "60", "start"],
         user)
    return PostgresServer(f"postgresql://labelserve@127.0.0.1:{port}/postgres", data_dir, bin_dir, user)
