"""The durable store of answers and feedback, written by one thread per process.

Every read and write of a server process goes through one thread and one connection (the one-writer discipline):
requests put jobs on a queue and await them; the thread takes everything queued, runs it in one transaction and
commits, then answers each job. So a burst of answers costs one commit, a request learns its rows are durable before
its client learns its ids, and several worker processes on one SQLite file take turns at its write lock (busy
timeout) instead of failing. Calibration, offline, reads with a connection of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from service.errors import PredictionNotFoundError, ServiceError, StoreUnavailableError
from service.store.database import Connection, Dialect, connect, describe
from service.store.schema import migrate

__all__ = ["FeedbackRow", "PredictionRow", "Store", "find_answer", "insert_predictions", "merge_truth", "purge",
           "read_feedback", "save_feedback"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
_BATCH = 512  # jobs per transaction at most


@dataclass(frozen=True)
class PredictionRow:
    """One answered image as kept for feedback."""

    id: str
    model: str
    version: int
    created: float
    probabilities: np.ndarray  # [C] float32
    image: bytes | None = None


@dataclass(frozen=True)
class FeedbackRow:
    """The feedback on one answer: its probabilities then, and what is true (1, 0, or -1 unknown) per label."""

    id: str
    model: str
    version: int
    updated: float
    probabilities: np.ndarray  # [C] float32
    truth: np.ndarray  # [C] int8


def merge_truth(existing: np.ndarray | None, update: np.ndarray) -> np.ndarray:
    """What is known after `update` on top of `existing`: a label the update says something about takes its value,
    the others keep theirs (so sending the same feedback twice changes nothing, and partial feedback adds up)."""
    if existing is None:
        return update.astype(np.int8)
    return np.where(update >= 0, update, existing).astype(np.int8)


@dataclass
class _Job:
    work: Callable[[Connection, Dialect], Any]
    future: asyncio.Future[Any] | None
    loop: asyncio.AbstractEventLoop | None


class Store:
    """Answers and feedback in SQLite or PostgreSQL (`service.store.database`), through this process's writer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    def open(self) -> None:
        """Connect, migrate, start the writer thread (blocking; the app's lifespan calls it on a worker thread).

        Raises:
            StoreConfigError: the URL cannot be opened.
            SchemaError: the database is newer than this code.
        """
        connection, dialect = connect(self.url)
        before = migrate(connection, dialect)
        logger.info("store %s ready (schema %s)", describe(self.url),
                    "created" if before == 0 else "migrated" if before < 1 else "current")
        self._thread = threading.Thread(target=self._serve, args=(connection, dialect), name="store-writer",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Finish what is queued, then stop the thread and close the connection."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    async def run(self, work: Callable[[Connection, Dialect], T]) -> T:
        """`work(connection, dialect)` in the writer's next transaction; returns once it is committed.

        Raises:
            StoreUnavailableError: the transaction failed (it was rolled back).
        """
        if self._thread is None:
            raise StoreUnavailableError("the store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(work, future, loop))
        return await future

    def _serve(self, connection: Connection, dialect: Dialect) -> None:
        try:
            while (first := self._queue.get()) is not None:
                jobs = [first]
                stop = False
                while len(jobs) < _BATCH:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    jobs.append(job)
                self._transaction(connection, dialect, jobs)
                if stop:
                    return
        finally:
            connection.close()

    def _transaction(self, connection: Connection, dialect: Dialect, jobs: list[_Job]) -> None:
        results: list[tuple[bool, Any]] = []
        try:
            for job in jobs:
                try:
                    results.append((True, job.work(connection, dialect)))
                except ServiceError as error:  # a job's own refusal (unknown id): its caller's answer, not a failure
                    results.append((False, error))
            connection.commit()
        except Exception as exc:  # the database failed: nothing of this transaction was kept
            logger.exception("the store failed a transaction of %d jobs; rolled back", len(jobs))
            try:
                connection.rollback()
            except Exception:  # the connection itself is gone; the next transaction will fail the same way
                logger.exception("rolling back failed too")
            results = [(False, StoreUnavailableError(f"the store could not keep this ({type(exc).__name__}: "
                                                     f"{exc}); retry shortly"))] * len(jobs)
        for job, (ok, value) in zip(jobs, results, strict=True):
            if job.future is not None and job.loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop was closed: nobody awaits the result any more
                    job.loop.call_soon_threadsafe(_settle, job.future, ok, value)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def insert_predictions(rows: Sequence[PredictionRow]) -> Callable[[Connection, Dialect], None]:
    """A job that keeps `rows` (a reused id replaces the earlier answer)."""

    def work(connection: Connection, dialect: Dialect) -> None:
        connection.cursor().executemany(dialect.sql(
            "INSERT INTO predictions (id, model, version, created, probabilities, image) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET model = excluded.model, version = excluded.version, "
            "created = excluded.created, probabilities = excluded.probabilities, image = excluded.image"),
            [(row.id, row.model, row.version, row.created, row.probabilities.astype("<f4").tobytes(), row.image)
             for row in rows])

    return work


def find_answer(prediction_id: str) -> Callable[[Connection, Dialect], FeedbackRow]:
    """A job that looks up an answer by id, with any feedback it already has (truth -1 where none): from the answers
    kept, else from the feedback table (the answer may be purged by retention while its feedback is kept).

    Raises (in the job):
        PredictionNotFoundError: no answer and no feedback with this id.
    """

    def work(connection: Connection, dialect: Dialect) -> FeedbackRow:
        feedback = connection.execute(dialect.sql(
            "SELECT model, version, updated, probabilities, truth FROM feedback WHERE id = ?"),
            (prediction_id,)).fetchone()
        if feedback is not None:
            model, version, updated, probabilities, truth = feedback
            return FeedbackRow(prediction_id, model, int(version), float(updated),
                               np.frombuffer(bytes(probabilities), "<f4"), np.frombuffer(bytes(truth), np.int8))
        answer = connection.execute(dialect.sql(
            "SELECT model, version, created, probabilities FROM predictions WHERE id = ?"),
            (prediction_id,)).fetchone()
        if answer is None:
            raise PredictionNotFoundError(f"no answer with id {prediction_id!r} is kept here: it was never given, or "
                                          "is older than LABELSERVE_RETENTION_S")
        model, version, created, probabilities = answer
        probabilities = np.frombuffer(bytes(probabilities), "<f4")
        return FeedbackRow(prediction_id, model, int(version), float(created), probabilities,
                           np.full(len(probabilities), -1, np.int8))

    return work


def save_feedback(answer: FeedbackRow, update: np.ndarray) -> Callable[[Connection, Dialect], np.ndarray]:
    """A job that merges `update` into the answer's feedback (`merge_truth`) and returns what was known before it
    (-1 everywhere for a first feedback). Re-read inside the transaction, with the row locked where the database can,
    so two feedbacks on one answer at once both count."""

    def work(connection: Connection, dialect: Dialect) -> np.ndarray:
        lock = " FOR UPDATE" if dialect.name == "postgresql" else ""
        row = connection.execute(dialect.sql(f"SELECT truth FROM feedback WHERE id = ?{lock}"),
                                 (answer.id,)).fetchone()
        before = np.frombuffer(bytes(row[0]), np.int8) if row is not None else None
        merged = merge_truth(before, update)
        stamp = now()
        connection.execute(dialect.sql(
            "INSERT INTO feedback (id, model, version, created, updated, probabilities, truth) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET truth = excluded.truth, "
            "updated = excluded.updated"),
            (answer.id, answer.model, answer.version, stamp, stamp, answer.probabilities.astype("<f4").tobytes(),
             merged.tobytes()))
        return before if before is not None else np.full(len(update), -1, np.int8)

    return work


def read_feedback(connection: Connection, dialect: Dialect, model: str,
                  versions: Sequence[int]) -> list[FeedbackRow]:
    """Every feedback on `model`'s answers by `versions`, oldest first (for calibration)."""
    marks = ", ".join("?" for _ in versions)
    rows = connection.execute(dialect.sql(
        f"SELECT id, version, updated, probabilities, truth FROM feedback WHERE model = ? AND version IN ({marks}) "
        "ORDER BY updated, id"), (model, *versions)).fetchall()
    return [FeedbackRow(row[0], model, int(row[1]), float(row[2]), np.frombuffer(bytes(row[3]), "<f4"),
                        np.frombuffer(bytes(row[4]), np.int8)) for row in rows]


def purge(retention_s: float, max_predictions: int, feedback_retention_s: float) -> Callable[
        [Connection, Dialect], tuple[int, int]]:
    """A job that deletes answers older than `retention_s` or beyond the newest `max_predictions`, and feedback older
    than `feedback_retention_s`; returns (answers, feedbacks) deleted."""

    def work(connection: Connection, dialect: Dialect) -> tuple[int, int]:
        stamp = now()
        answers = connection.execute(dialect.sql("DELETE FROM predictions WHERE created < ?"),
                                     (stamp - retention_s,)).rowcount
        cut = connection.execute(dialect.sql(
            "SELECT created FROM predictions ORDER BY created DESC LIMIT 1 OFFSET ?"), (max_predictions,)).fetchone()
        if cut is not None:
            answers += connection.execute(dialect.sql("DELETE FROM predictions WHERE created <= ?"),
                                          (cut[0],)).rowcount
        feedbacks = connection.execute(dialect.sql("DELETE FROM feedback WHERE updated < ?"),
                                       (stamp - feedback_retention_s,)).rowcount
        return max(answers, 0), max(feedbacks, 0)

    return work


def now() -> float:
    """Wall-clock seconds, as the store's timestamps are."""
    return time.time()
