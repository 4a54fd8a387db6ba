"""Where answers and feedback are kept: SQLite (a file, the embedded default) or PostgreSQL (several replicas), one URL.

    sqlite:///var/lib/labelserve/feedback.sqlite3      a file (created, with its folder)
    postgresql://user:password@host:5432/labelserve    a server (psycopg 3)

Both speak the same SQL here; what differs (the parameter marker, the binary type, how a connection is opened and
made safe to share the file) lives in a `Dialect`. SQLite runs in WAL mode with `synchronous=NORMAL`: a commit is
in the log file before it returns, so a killed process loses nothing it acknowledged (a power cut can lose the last
commits: use PostgreSQL where that matters), and readers never block the writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

__all__ = ["Connection", "Dialect", "StoreConfigError", "connect", "describe"]


class StoreConfigError(ValueError):
    """The store URL names nothing this service can open."""


class Connection(Protocol):
    """The DB-API surface both drivers share and the store uses."""

    def execute(self, sql: str, parameters: Sequence[Any] = ...) -> Any:
        """Run one statement."""

    def cursor(self) -> Any:
        """A cursor (its `executemany` runs one statement per row, in both drivers)."""

    def commit(self) -> None:
        """Make the transaction durable."""

    def rollback(self) -> None:
        """Drop the transaction."""

    def close(self) -> None:
        """Close."""


@dataclass(frozen=True)
class Dialect:
    """What differs between the two databases, for the same statements."""

    name: str
    binary: str  # column type for bytes

    def sql(self, statement: str) -> str:
        """A statement written with `?` markers, in this driver's marker style."""
        return statement.replace("?", "%s") if self.name == "postgresql" else statement


SQLITE = Dialect("sqlite", "BLOB")
POSTGRESQL = Dialect("postgresql", "BYTEA")


def describe(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


def connect(url: str) -> tuple[Connection, Dialect]:
    """A new connection to the store at `url`.

    Raises:
        StoreConfigError: an unknown scheme, a missing driver, or a database that cannot be reached.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return _sqlite(url), SQLITE
    if scheme in ("postgresql", "postgres"):
        return _postgresql(url), POSTGRESQL
    raise StoreConfigError(f"LABELSERVE_STORE_URL {describe(url)!r}: use sqlite:///<file> or "
                           "postgresql://<user>:<password>@<host>/<database>")


def _sqlite(url: str) -> sqlite3.Connection:
    if not url.startswith("sqlite:///"):
        raise StoreConfigError(f"LABELSERVE_STORE_URL {url!r}: a SQLite URL is sqlite:///<relative path> or "
                               "sqlite:////<absolute path>")
    path = Path(url.removeprefix("sqlite:///"))  # sqlite:////abs keeps its leading slash
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA busy_timeout=30000")  # several worker processes take turns at the one writer lock
    except (OSError, sqlite3.Error) as exc:
        raise StoreConfigError(f"cannot open the SQLite store {path}: {exc}; set LABELSERVE_STORE_URL to a "
                               "writable place") from exc
    return connection


def _postgresql(url: str) -> Connection:
    try:
        import psycopg
    except ImportError as exc:
        raise StoreConfigError("a postgresql:// store needs psycopg: pip install 'labelserve[serve]'") from exc
    try:
        return psycopg.connect(url, connect_timeout=10)
    except psycopg.Error as exc:
        raise StoreConfigError(f"cannot reach the PostgreSQL store {describe(url)}: {exc}") from exc
