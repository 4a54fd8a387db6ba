"""The store's tables, as numbered migrations applied in order, once, under a lock.

Each migration is a list of statements; the store's `schema_version` row says which have run. A process that opens
the store applies the ones it lacks inside one transaction, holding a lock that other processes (workers, pods)
wait on, so two of them never migrate at once. A database newer than this code is refused rather than misread.

Probabilities are float32 bytes in label order; `truth` is one int8 per label: 1 present, 0 absent, -1 unknown
(partial feedback confirms or rejects some labels only).
"""

from __future__ import annotations

from service.store.database import Connection, Dialect

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: answers kept for feedback, and the feedback itself (with the answer's probabilities, so purging
       # answers never loses what calibration needs)
        "CREATE TABLE predictions (id TEXT PRIMARY KEY, model TEXT NOT NULL, version INTEGER NOT NULL, "
        "created DOUBLE PRECISION NOT NULL, probabilities {binary} NOT NULL, image {binary})",
        "CREATE INDEX predictions_created ON predictions (created)",
        "CREATE TABLE feedback (id TEXT PRIMARY KEY, model TEXT NOT NULL, version INTEGER NOT NULL, "
        "created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL, probabilities {binary} NOT NULL, "
        "truth {binary} NOT NULL)",
        "CREATE INDEX feedback_model ON feedback (model, updated)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
_LOCK_KEY = 0x6C616265  # "labe": PostgreSQL's advisory lock for migrations


class SchemaError(RuntimeError):
    """The database was written by a newer labelserve."""


def migrate(connection: Connection, dialect: Dialect) -> int:
    """Bring the schema to `SCHEMA_VERSION`; returns the version it was at before."""
    if dialect.name == "postgresql":
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
    else:
        connection.execute("BEGIN IMMEDIATE")  # the write lock, held until commit
    connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = connection.execute("SELECT version FROM schema_version").fetchone()
    current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        connection.rollback()
        raise SchemaError(f"the store is at schema version {current}, this labelserve knows {SCHEMA_VERSION}: "
                          "upgrade labelserve, or point LABELSERVE_STORE_URL elsewhere")
    for statements in MIGRATIONS[current:]:
        for statement in statements:
            connection.execute(statement.format(binary=dialect.binary))
    if row is None:
        connection.execute(dialect.sql("INSERT INTO schema_version (version) VALUES (?)"), (SCHEMA_VERSION,))
    else:
        connection.execute(dialect.sql("UPDATE schema_version SET version = ?"), (SCHEMA_VERSION,))
    connection.commit()
    return current
