"""The model repository as the service sees it: which model versions are served, each with engine and batcher.

At startup every model folder is scanned and its newest version that loads is served; a broken version or model
is logged and skipped, so the rest still come up. Loading one version (`_load_version`) and installing it
(`_install`) are separate steps, so a later watcher can load a new version next to the old one and swap it in.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from labelserve.bundle import Bundle, BundleError, Manifest, list_versions, load_bundle, validate_model_name
from service.batching import DynamicBatcher
from service.engines import Engine, EngineLoadError, create_engine
from service.errors import ModelNotFoundError, NotReadyError
from service.observability import Metrics
from service.settings import Settings

__all__ = ["ModelRepository", "RepositoryError", "ServedModel"]

logger = logging.getLogger(__name__)


class RepositoryError(Exception):
    """The repository root itself is unusable (missing, not a folder): the service cannot start."""


@dataclass(frozen=True)
class ServedModel:
    """One model version being served."""

    bundle: Bundle
    engine: Engine
    batcher: DynamicBatcher

    @property
    def manifest(self) -> Manifest:
        """The version's manifest."""
        return self.bundle.manifest

    @property
    def name(self) -> str:
        """Model name."""
        return self.manifest.name

    @property
    def version(self) -> int:
        """Model version."""
        return self.manifest.version

    @property
    def has_attention(self) -> bool:
        """Whether the network outputs attention maps."""
        return self.manifest.outputs.attention is not None


class ModelRepository:
    """Loads the repository's models and hands them to requests by name."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._root = Path(settings.model_repository)
        self._settings = settings
        self._metrics = metrics
        self._models: dict[str, ServedModel] = {}

    @property
    def root(self) -> Path:
        """Repository root folder."""
        return self._root

    def models(self) -> list[ServedModel]:
        """Served models, sorted by name."""
        return [self._models[name] for name in sorted(self._models)]

    def get(self, name: str | None = None) -> ServedModel:
        """The served model called `name`, or the default (first by name) when `name` is None.

        Raises:
            ModelNotFoundError: no model of that name is served.
            NotReadyError: no model is served at all.
        """
        if not self._models:
            raise NotReadyError("no model is loaded yet")
        if name is None:
            return self._models[min(self._models)]
        model = self._models.get(name)
        if model is None:
            raise ModelNotFoundError(f"unknown model {name!r}; this server serves: {', '.join(sorted(self._models))}")
        return model

    async def load_all(self) -> None:
        """Scan the root and serve the newest loadable version of every model folder."""
        if not self._root.is_dir():
            raise RepositoryError(f"model repository {self._root.resolve()} is not a folder; set "
                                  "LABELSERVE_MODEL_REPOSITORY (or `labelserve serve --repository`) to the folder "
                                  "that holds <model>/<version>/manifest.json, e.g. after `labelserve export`")
        for model_dir in sorted(p for p in self._root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                validate_model_name(model_dir.name)
            except ValueError as exc:
                logger.error("skipping %s: %s", model_dir, exc)
                continue
            loaded = await asyncio.to_thread(self._load_newest, model_dir)
            if loaded is not None:
                self._install(*loaded)
        if not self._models:
            logger.error("no model could be loaded from %s; the service stays not ready", self._root.resolve())

    def _load_newest(self, model_dir: Path) -> tuple[Bundle, Engine] | None:
        """Blocking: the newest version of a model that verifies and warms up, trying older ones on failure."""
        versions = list_versions(model_dir)
        if not versions:
            logger.error("skipping %s: no integer version folders", model_dir)
        for version in reversed(versions):
            try:
                return self._load_version(model_dir / str(version))
            except (BundleError, EngineLoadError) as exc:
                logger.error("cannot serve %s: %s", model_dir / str(version), exc)
        return None

    def _load_version(self, version_dir: Path) -> tuple[Bundle, Engine]:
        """Blocking: verify checksums, build the engine and warm it up."""
        bundle = load_bundle(version_dir, verify_checksums=True)
        engine = create_engine(bundle, max_batch_size=self._settings.max_batch_size,
                               intra_op_threads=self._settings.intra_op_threads)
        engine.load()
        return bundle, engine

    def _install(self, bundle: Bundle, engine: Engine) -> None:
        """Start a batcher for a loaded version and make it the one requests get (event loop thread)."""
        manifest = bundle.manifest
        attention = manifest.outputs.attention
        batcher = DynamicBatcher(
            engine, logits_output=manifest.outputs.logits.name,
            attention_output=attention.name if attention is not None else None,
            max_batch_size=engine.info.max_batch_size, max_queue_delay_ms=self._settings.max_queue_delay_ms,
            max_queue_size=self._settings.max_queue_size,
            observer=self._metrics.observer(manifest.name, manifest.version), name=manifest.name,
        )
        batcher.start()
        self._models[manifest.name] = ServedModel(bundle=bundle, engine=engine, batcher=batcher)
        self._metrics.set_model_info(manifest.name, manifest.version, engine.info.name, engine.info.provider)
        logger.info("serving %s v%d from %s (%s, max batch %d)", manifest.name, manifest.version, bundle.path,
                    engine.info.provider, engine.info.max_batch_size)

    async def stop(self, timeout_s: float) -> None:
        """Stop every batcher, serving what is already queued within `timeout_s` in total."""
        models, self._models = list(self._models.values()), {}
        await asyncio.gather(*(model.batcher.stop(timeout_s) for model in models))
