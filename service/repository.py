"""The model repository as the service sees it: which model versions are served, each with engine and batcher.

`sync()` brings the served set in line with the folder: for every model, the versions its policy wants
(`service.model_config`; default: the newest one that loads). A new version is loaded and warmed next to the old
one, installed, and only then is the old one unloaded, after the requests holding it have finished (leases), so a
swap neither fails nor drops a request. A version that fails to verify or warm up is refused, logged and counted;
it is retried only once its manifest changes. `watch()` calls `sync()` every `repository_poll_s` seconds, so a
version that `labelserve export` writes (atomically: staged, then renamed into place) is picked up by itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from starlette.types import Scope

from labelserve.bundle import (
    MANIFEST_FILENAME,
    Bundle,
    BundleError,
    Manifest,
    list_versions,
    load_bundle,
    read_manifest,
    validate_model_name,
)
from service.batching import DynamicBatcher
from service.canary import client_key, in_canary
from service.engines import Engine, EngineLoadError, create_engine
from service.errors import ModelNotFoundError, NotReadyError
from service.feedback_window import FeedbackWindow
from service.label_monitor import LabelMonitor, MonitorSettings
from service.loop_pool import LoopThreadPool
from service.model_config import ModelConfig, ModelConfigError, load_model_config
from service.observability import Metrics
from service.settings import Settings
from service.shadow import Shadow
from service.statistics import FanoutObserver, VersionStatistics

__all__ = ["ModelRepository", "RepositoryError", "ServedModel", "VersionState", "check_repository_root"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RepositoryError(Exception):
    """The repository root itself is unusable (missing, not a folder): the service cannot start."""


class ServedModel:
    """One model version being served: its engine, its batcher, the threads that decode its images, what it has
    answered (statistics, per-label health), and how many requests hold it right now."""

    def __init__(self, bundle: Bundle, engine: Engine, batcher: DynamicBatcher, decode_pool: LoopThreadPool,
                 statistics: VersionStatistics | None = None, monitor: LabelMonitor | None = None,
                 feedback: FeedbackWindow | None = None) -> None:
        self.bundle = bundle
        self.engine = engine
        self.batcher = batcher
        self.decode_pool = decode_pool
        self.statistics = statistics or VersionStatistics()
        self.monitor = monitor
        self.feedback = feedback or FeedbackWindow(bundle.manifest.name, bundle.manifest.version,
                                                   bundle.manifest.labels, bundle.manifest.thresholds, 2000, 86400.0)
        self._leases = 0
        self._idle = asyncio.Event()
        self._idle.set()

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

    def acquire(self) -> None:
        """A request starts using this version."""
        self._leases += 1
        self._idle.clear()

    def release(self) -> None:
        """A request is done with this version."""
        self._leases -= 1
        if self._leases == 0:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request holds this version; False if `timeout_s` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)
        except TimeoutError:
            return False
        return True


def check_repository_root(root: Path) -> None:
    """RepositoryError unless `root` is a folder, saying which setting names it (`labelserve serve` checks this before
    it starts anything, so the message is a plain line rather than a startup failure in the JSON log)."""
    if not root.is_dir():
        raise RepositoryError(f"model repository {root.resolve()} is not a folder; set LABELSERVE_MODEL_REPOSITORY "
                              "(or `labelserve serve --repository`) to the folder that holds "
                              "<model>/<version>/manifest.json, e.g. after `labelserve export`")


def _either(per_model: T | None, service_wide: T) -> T:
    """A model's own setting where its config.json has one, else the service's."""
    return per_model if per_model is not None else service_wide


def _manifest_stamp(version_dir: Path) -> int:
    try:
        return (version_dir / MANIFEST_FILENAME).stat().st_mtime_ns
    except OSError:
        return -1


@dataclass(frozen=True)
class VersionState:
    """One version folder as the repository index reports it."""

    name: str
    version: int
    state: str  # READY, LOADING or UNAVAILABLE (Triton's model states)
    reason: str  # why it is not READY; empty when it is


class ModelRepository:
    """Loads the repository's models, keeps them in sync with the folder, and lends them to requests."""

    def __init__(self, settings: Settings, metrics: Metrics,
                 requests_in_flight: Callable[[], int] = lambda: 0) -> None:
        """`requests_in_flight`: what the server is computing over every model (the compute gate's count), which
        tells the batchers when a request is alone."""
        self._requests_in_flight = requests_in_flight
        self._root = Path(settings.model_repository)
        self._settings = settings
        self._metrics = metrics
        self._models: dict[str, dict[int, ServedModel]] = {}
        self._refused: dict[Path, tuple[int, str]] = {}  # version folder -> (manifest stamp, why) when refused
        self._loading: set[Path] = set()
        self._unloading: set[asyncio.Task[None]] = set()
        self._empty: set[str] = set()  # models already reported as having no versions
        self._configs: dict[str, ModelConfig] = {}  # each served model's config.json as last read
        self._shadows: dict[str, Shadow] = {}  # model -> its shadow, while both versions are served
        self._warned_rollout: set[tuple[str, str, int]] = set()
        self._sync_lock = asyncio.Lock()
        self._monitor_settings = MonitorSettings(
            window_images=settings.monitor_window_images, window_s=settings.monitor_window_s,
            drift_threshold=settings.drift_threshold, min_images=settings.drift_min_images)

    @property
    def root(self) -> Path:
        """Repository root folder."""
        return self._root

    def models(self) -> list[ServedModel]:
        """Served model versions, sorted by name, then version."""
        return [self._models[name][version] for name in sorted(self._models) for version in sorted(self._models[name])]

    def get(self, name: str | None = None, version: int | None = None, routing: Scope | None = None) -> ServedModel:
        """The served model `name` (default: the first by name) at `version` (default: its config's default_version,
        else its newest served; or its canary, for the clients of the canary's share, told apart by `routing`).

        Raises:
            ModelNotFoundError: no model of that name, or not that version, is served.
            NotReadyError: no model is served at all.
        """
        if not self._models:
            raise NotReadyError("no model is loaded yet")
        name = min(self._models) if name is None else name
        versions = self._models.get(name)
        if versions is None:
            raise ModelNotFoundError(f"unknown model {name!r}; this server serves: {', '.join(sorted(self._models))}")
        if version is None:
            return versions[self._unpinned_version(name, versions, routing)]
        if version not in versions:
            raise ModelNotFoundError(f"model {name!r} has no served version {version}; served versions: "
                                     f"{', '.join(map(str, sorted(versions)))}")
        return versions[version]

    def _unpinned_version(self, name: str, versions: dict[int, ServedModel], routing: Scope | None) -> int:
        config = self._configs.get(name)
        default = max(versions)
        if config is None:
            return default
        if config.default_version in versions:
            default = config.default_version
        canary = config.canary
        if (canary is not None and canary.version in versions and routing is not None
                and in_canary(client_key(routing, canary.key_header), canary.weight)):
            return canary.version
        return default

    def default_version(self, name: str) -> int:
        """The version that answers requests of `name` that name no version and are not in a canary."""
        return self._unpinned_version(name, self._models[name], None)

    def served(self, name: str, version: int) -> ServedModel | None:
        """The served version, or None when it is not served (no error: for bookkeeping that may skip it)."""
        return self._models.get(name, {}).get(version)

    def manifest_of(self, name: str, version: int) -> Manifest:
        """A version's manifest, served or not (feedback may name an answer of a version since unloaded).

        Raises:
            ModelNotFoundError: no such version in the repository.
        """
        served = self._models.get(name, {}).get(version)
        if served is not None:
            return served.manifest
        try:
            validate_model_name(name)
            return read_manifest(self._root / name / str(version))
        except (ValueError, BundleError) as exc:
            raise ModelNotFoundError(f"model {name!r} has no version {version} in the repository") from exc

    def shadow_for(self, served: ServedModel) -> Shadow | None:
        """The shadow that mirrors `served` (its primary), if one is configured and its candidate is served."""
        shadow = self._shadows.get(served.name)
        return shadow if shadow is not None and shadow.primary_version == served.version else None

    def shadows(self) -> list[Shadow]:
        """Every active shadow, by model name."""
        return [self._shadows[name] for name in sorted(self._shadows)]

    def index(self) -> list[VersionState]:
        """Every version folder of every model folder, served or not, with its state and why (Triton's repository
        index); sorted by name, then version."""
        if not self._root.is_dir():
            return []
        states = []
        for model_dir in sorted(p for p in self._root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            served = self._models.get(model_dir.name, {})
            for version in list_versions(model_dir):
                states.append(VersionState(model_dir.name, version, *self._state_of(model_dir / str(version),
                                                                                    version in served)))
        return states

    def _state_of(self, version_dir: Path, served: bool) -> tuple[str, str]:
        try:
            validate_model_name(version_dir.parent.name)
        except ValueError as exc:
            return "UNAVAILABLE", f"skipped: {exc}"
        if served:
            return "READY", ""
        if version_dir in self._loading:
            return "LOADING", "verifying, loading and warming up"
        refused = self._refused.get(version_dir)
        if refused is not None and refused[0] == _manifest_stamp(version_dir):
            return "UNAVAILABLE", f"refused: {refused[1]}"
        return "UNAVAILABLE", "not served: outside the model's version_policy, or not loaded yet"

    @asynccontextmanager
    async def lease(self, name: str | None = None, version: int | None = None,
                    routing: Scope | None = None) -> AsyncIterator[ServedModel]:
        """`get()`, holding the version so an unload waits for this request to finish with it."""
        served = self.get(name, version, routing)
        served.acquire()
        try:
            yield served
        finally:
            served.release()

    async def load_all(self) -> None:
        """First sync at startup; the root must exist."""
        check_repository_root(self._root)
        await self.sync()
        if not self._models:
            logger.error("no model could be loaded from %s; the service stays not ready", self._root.resolve())

    async def sync(self) -> None:
        """Load what the folder and the policies want, unload what they no longer want."""
        async with self._sync_lock:
            present: set[str] = set()
            for model_dir in sorted(p for p in self._root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                try:
                    validate_model_name(model_dir.name)
                except ValueError as exc:
                    logger.error("skipping %s: %s", model_dir, exc)
                    continue
                present.add(model_dir.name)
                await self._sync_model(model_dir)
            for name in set(self._models) - present:
                logger.warning("model folder %s disappeared; unloading it", self._root / name)
                for version in list(self._models[name]):
                    self._unload(name, version)
            for name in set(self._configs) - present:
                self._configs.pop(name)
                self._shadows.pop(name, None)

    async def watch(self, interval_s: float) -> None:
        """Call `sync()` every `interval_s` seconds until cancelled; a failing sync is logged and retried."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sync()
            except Exception:  # a watcher that dies silently would stop every future reload
                logger.exception("repository sync failed; retrying in %.1f s", interval_s)

    async def _sync_model(self, model_dir: Path) -> None:
        name = model_dir.name
        try:
            config = load_model_config(model_dir)
        except ModelConfigError as exc:
            if name not in self._models:
                logger.error("cannot serve %s: %s", name, exc)
            else:
                logger.error("keeping %s as it is: %s", name, exc)
            return
        served = self._models.get(name, {})
        versions = list_versions(model_dir)
        if versions:
            self._empty.discard(name)
        elif name not in self._empty:
            logger.error("nothing to serve in %s: no integer version folders", model_dir)
            self._empty.add(name)
        wanted: list[int] = []
        for version in config.version_policy.candidates(versions):
            if config.version_policy.count is not None and len(wanted) >= config.version_policy.count:
                break
            if version in served or await self._try_load(model_dir / str(version), config):
                wanted.append(version)
        for version in [v for v in self._models.get(name, {}) if v not in wanted]:
            self._unload(name, version)
        self._configs[name] = config
        self._sync_rollout(name, config)

    def _sync_rollout(self, name: str, config: ModelConfig) -> None:
        """Keep the model's shadow in line with its config and what is served (its comparison window survives a
        sync that changes nothing); say once when a version the config names is not served."""
        versions = self._models.get(name, {})
        for role, target in (("default_version", config.default_version),
                             ("shadow", config.shadow.version if config.shadow else None),
                             ("canary", config.canary.version if config.canary else None)):
            if target is not None and target not in versions and (name, role, target) not in self._warned_rollout:
                self._warned_rollout.add((name, role, target))
                logger.error("%s config.json names version %d as its %s, which is not served (served: %s); add it "
                             "to version_policy", name, target, role, ", ".join(map(str, sorted(versions))) or "none")
        shadow = config.shadow
        if shadow is None or not versions or shadow.version not in versions:
            self._shadows.pop(name, None)
            return
        primary = versions[self.default_version(name)]
        current = self._shadows.get(name)
        if (current is not None and current.primary_version == primary.version
                and current.candidate_version == shadow.version):
            current.share = shadow.share
            return
        candidate = versions[shadow.version]
        self._shadows[name] = Shadow(
            name, primary.version, candidate.version, candidate.batcher, primary.manifest.labels,
            primary.manifest.thresholds, candidate.manifest.thresholds, candidate.manifest.outputs.logits.name,
            shadow.share, self._settings.monitor_window_images, self._settings.monitor_window_s)
        logger.info("%s v%d shadows %.0f %% of v%d's images", name, candidate.version, shadow.share * 100,
                    primary.version)

    async def _try_load(self, version_dir: Path, config: ModelConfig) -> bool:
        """Load and install a version unless it was refused before in its current state; False if it fails."""
        stamp = _manifest_stamp(version_dir)
        refused = self._refused.get(version_dir)
        if refused is not None and refused[0] == stamp:
            return False
        name, version = version_dir.parent.name, version_dir.name
        self._loading.add(version_dir)
        try:
            bundle, engine = await asyncio.to_thread(self._load_version, version_dir, config)
        except (BundleError, EngineLoadError) as exc:
            self._refused[version_dir] = (stamp, str(exc))
            self._metrics.model_loads.labels(name, version, "failure").inc()
            logger.error("refusing %s: %s", version_dir, exc)
            return False
        finally:
            self._loading.discard(version_dir)
        self._refused.pop(version_dir, None)
        self._metrics.model_loads.labels(name, version, "success").inc()
        self._install(bundle, engine, config)
        return True

    def _load_version(self, version_dir: Path, config: ModelConfig) -> tuple[Bundle, Engine]:
        """Blocking: verify checksums, build the engine and warm it up."""
        bundle = load_bundle(version_dir, verify_checksums=True)
        if bundle.manifest.name != version_dir.parent.name or bundle.manifest.version != int(version_dir.name):
            raise BundleError(f"{version_dir} holds {bundle.manifest.name} v{bundle.manifest.version} according to "
                              "its manifest; the folder and the manifest must agree")
        settings = self._settings
        engine = create_engine(bundle, max_batch_size=config.max_batch_size or settings.max_batch_size,
                               intra_op_threads=_either(config.intra_op_threads, settings.intra_op_threads),
                               intra_op_spinning=_either(config.intra_op_spinning, settings.intra_op_spinning),
                               lone_session=_either(config.lone_session, settings.lone_session),
                               execution_providers=settings.execution_providers,
                               engine=config.engine or settings.engine, torch_device=settings.torch_device)
        engine.load()
        return bundle, engine

    def _install(self, bundle: Bundle, engine: Engine, config: ModelConfig) -> None:
        """Start a batcher for a loaded version and let requests have it (event loop thread)."""
        manifest = bundle.manifest
        attention = manifest.outputs.attention
        statistics = VersionStatistics()
        monitor = None
        if self._settings.monitor_labels:
            monitor = LabelMonitor(manifest.name, manifest.version, manifest.labels, manifest.thresholds,
                                   manifest.baseline, self._monitor_settings)
        batcher = DynamicBatcher(
            engine, logits_output=manifest.outputs.logits.name,
            attention_output=attention.name if attention is not None else None,
            max_batch_size=engine.info.max_batch_size,
            max_queue_delay_ms=(config.max_queue_delay_ms if config.max_queue_delay_ms is not None
                                else self._settings.max_queue_delay_ms),
            max_queue_size=config.max_queue_size or self._settings.max_queue_size,
            observer=FanoutObserver(self._metrics.observer(manifest.name, manifest.version), statistics),
            name=f"{manifest.name}-v{manifest.version}", requests_in_flight=self._requests_in_flight,
            on_logits=monitor.observe if monitor is not None else None,
        )
        batcher.start()
        decode_pool = LoopThreadPool(config.decode_threads or self._settings.decode_threads,
                                     name=f"decode-{manifest.name}-v{manifest.version}")
        feedback = FeedbackWindow(manifest.name, manifest.version, manifest.labels, manifest.thresholds,
                                  self._settings.monitor_window_images, self._settings.monitor_window_s)
        self._models.setdefault(manifest.name, {})[manifest.version] = ServedModel(
            bundle, engine, batcher, decode_pool, statistics, monitor, feedback)
        self._metrics.set_model_info(manifest.name, manifest.version, engine.info.name, engine.info.provider)
        logger.info("serving %s v%d from %s (%s, max batch %d)", manifest.name, manifest.version, bundle.path,
                    engine.info.provider, engine.info.max_batch_size)

    def _unload(self, name: str, version: int) -> None:
        """Stop lending a version now; stop its batcher once the requests holding it are done (in the background)."""
        versions = self._models[name]
        served = versions.pop(version)
        if not versions:
            del self._models[name]
        shadow = self._shadows.get(name)
        if shadow is not None and version in (shadow.primary_version, shadow.candidate_version):
            del self._shadows[name]
        self._metrics.clear_model_info(name, version)
        task = asyncio.get_running_loop().create_task(self._retire(served), name=f"retire-{name}-v{version}")
        self._unloading.add(task)
        task.add_done_callback(self._unloading.discard)

    async def _retire(self, served: ServedModel) -> None:
        timeout = self._settings.drain_timeout_s
        if not await served.wait_idle(timeout):
            logger.warning("%s v%d still had requests after %.1f s; stopping it anyway", served.name, served.version,
                           timeout)
        await served.batcher.stop(timeout)
        served.decode_pool.shutdown()
        logger.info("unloaded %s v%d", served.name, served.version)

    async def stop(self, timeout_s: float) -> None:
        """Stop every batcher, serving what is already queued within `timeout_s` in total."""
        models = self.models()
        self._models = {}
        await asyncio.gather(*(model.batcher.stop(timeout_s) for model in models), *self._unloading)
        for model in models:
            model.decode_pool.shutdown()
