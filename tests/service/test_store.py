"""The store on both databases for real (SQLite in a file, PostgreSQL started for the session): migrations apply
once and refuse a newer schema, answers and feedback are kept and merged, retention deletes what it must, and what
one connection committed another sees."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from service.errors import PredictionNotFoundError
from service.store import PredictionRow, Store, connect
from service.store.schema import SCHEMA_VERSION, SchemaError, migrate
from service.store.store import find_answer, insert_predictions, purge, read_feedback, save_feedback


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    import psycopg

    server = request.getfixturevalue("postgres_url")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield server.rsplit("/", 1)[0] + f"/{name}"


def _row(answer_id: str, created: float, labels: int = 4) -> PredictionRow:
    return PredictionRow(answer_id, "m", 1, created, np.linspace(0, 1, labels, dtype=np.float32))


def test_migrations_run_once_and_a_newer_schema_is_refused(url: str) -> None:
    connection, dialect = connect(url)
    assert migrate(connection, dialect) == 0
    assert migrate(connection, dialect) == SCHEMA_VERSION  # already current: nothing applied again
    connection.execute(dialect.sql("UPDATE schema_version SET version = ?"), (SCHEMA_VERSION + 1,))
    connection.commit()
    with pytest.raises(SchemaError, match="upgrade labelserve"):
        migrate(connection, dialect)
    connection.close()


def test_answers_and_feedback_are_kept_merged_and_seen_by_another_connection(url: str) -> None:
    async def main() -> None:
        store = Store(url)
        await asyncio.to_thread(store.open)
        await store.run(insert_predictions([_row("a", time.time()), _row("b", time.time())]))
        answer = await store.run(find_answer("a"))
        assert (answer.model, answer.version, answer.truth.tolist()) == ("m", 1, [-1] * 4)
        before = await store.run(save_feedback(answer, np.array([1, -1, -1, 0], np.int8)))
        assert before.tolist() == [-1] * 4
        answer = await store.run(find_answer("a"))
        before = await store.run(save_feedback(answer, np.array([-1, 1, -1, -1], np.int8)))
        assert before.tolist() == [1, -1, -1, 0]
        with pytest.raises(PredictionNotFoundError):
            await store.run(find_answer("never"))
        await asyncio.to_thread(store.close)

    asyncio.run(main())
    connection, dialect = connect(url)
    rows = read_feedback(connection, dialect, "m", [1])
    assert [(row.id, row.truth.tolist()) for row in rows] == [("a", [1, 1, -1, 0])]
    assert rows[0].probabilities.tolist() == pytest.approx(np.linspace(0, 1, 4).tolist())
    connection.close()


def test_retention_deletes_old_and_surplus_answers_and_old_feedback(url: str) -> None:
    async def main() -> tuple[int, int]:
        store = Store(url)
        await asyncio.to_thread(store.open)
        now = time.time()
        await store.run(insert_predictions([_row(f"old-{i}", now - 10_000) for i in range(3)]
                                           + [_row(f"new-{i}", now - i) for i in range(5)]))
        kept = await store.run(find_answer("new-0"))
        await store.run(save_feedback(kept, np.array([1, 0, 1, 0], np.int8)))
        deleted = await store.run(purge(retention_s=3600, max_predictions=3, feedback_retention_s=3600))
        assert (await store.run(find_answer("new-0"))).truth.tolist() == [1, 0, 1, 0]  # its feedback stays
        for gone in ("old-0", "new-4"):
            with pytest.raises(PredictionNotFoundError):
                await store.run(find_answer(gone))
        await asyncio.to_thread(store.close)
        return deleted

    answers, feedbacks = asyncio.run(main())
    assert (answers, feedbacks) == (5, 0)  # 3 too old, then 2 beyond the newest 3


def test_sqlite_keeps_what_it_committed_in_its_write_ahead_log(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wal.sqlite3'}"
    connection, dialect = connect(url)
    migrate(connection, dialect)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    insert_predictions([_row("x", time.time())])(connection, dialect)
    connection.commit()
    with sqlite3.connect(tmp_path / "wal.sqlite3") as other:  # another process's view, before any checkpoint
        assert other.execute("SELECT id FROM predictions").fetchall() == [("x",)]
    connection.close()
