"""The durable store of answers and feedback (SQLite embedded, PostgreSQL for several replicas)."""

from pathlib import Path

from service.store.database import StoreConfigError, connect, describe
from service.store.store import FeedbackRow, PredictionRow, Store, merge_truth

__all__ = ["FeedbackRow", "PredictionRow", "Store", "StoreConfigError", "connect", "describe", "merge_truth",
           "store_url"]


def store_url(configured: str | None, repository: Path) -> str:
    """The store's URL: the one configured, else a SQLite file beside the model repository (`models` ->
    `models-feedback.sqlite3`), where the answers and feedback of the models in it belong."""
    if configured:
        return configured
    root = repository.resolve()
    return f"sqlite:///{root.parent / (root.name + '-feedback.sqlite3')}"
