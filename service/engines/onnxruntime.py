"""onnxruntime backend: one InferenceSession per model version, on the execution providers that
`service.engines.providers` resolved from settings and this machine (TensorRT, CUDA, CPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from labelserve.bundle import Bundle
from service.engines.base import EngineInfo, EngineLoadError, output_names, warm_up

__all__ = ["CPU_PROVIDERS", "OnnxRuntimeEngine"]

CPU_PROVIDERS = ("CPUExecutionProvider",)
_NUMPY_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class OnnxRuntimeEngine:
    """Runs a bundle's `model.onnx` with onnxruntime."""

    def __init__(self, bundle: Bundle, max_batch_size: int, intra_op_threads: int = 0,
                 providers: Sequence[str] = CPU_PROVIDERS, spinning: bool = False, lone_session: bool = True) -> None:
        """Describe the engine; nothing is loaded until `load()`.

        Args:
            bundle: a verified model version.
            max_batch_size: largest batch the batcher will send (already capped by the bundle's engine range).
            intra_op_threads: onnxruntime intra-op thread count; 0 keeps onnxruntime's default.
            providers: execution providers in order of preference.
            spinning: let idle intra-op threads spin between parallel sections instead of sleeping.
            lone_session: on the CPU with an intra-op pool, and without `spinning`, open a second session whose
                threads spin within a batch, for `run_lone` (the model's weights are in memory twice).
        """
        spec = bundle.manifest.engine("onnx")
        if spec is None:
            raise EngineLoadError(f"{bundle.path} has no onnx engine; its engines are "
                                  f"{[e.format for e in bundle.manifest.engines]}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        self._bundle = bundle
        self._model_path = bundle.file(spec.file)
        self._max_batch_size = min(max_batch_size, spec.max_batch)
        self._intra_op_threads = intra_op_threads
        self._spinning = spinning
        self._providers = tuple(providers)
        self._lone_session = lone_session
        self._session: ort.InferenceSession | None = None
        self._lone: ort.InferenceSession | None = None
        self._input_dtype: type[np.floating] = np.float32

    @property
    def info(self) -> EngineInfo:
        """Engine name, the provider actually in use once loaded, and the batch cap."""
        provider = self._session.get_providers()[0] if self._session is not None else self._providers[0]
        return EngineInfo(name="onnxruntime", provider=provider, max_batch_size=self._max_batch_size)

    @property
    def session_options(self) -> ort.SessionOptions:
        """The options the loaded session runs with (threads, spinning), for checks and diagnostics."""
        if self._session is None:
            raise RuntimeError("OnnxRuntimeEngine.session_options read before load()")
        return self._session.get_session_options()

    def load(self) -> None:
        """Create the session, check its inputs and outputs against the manifest, and warm up."""
        # Off by default: idle intra-op threads would spin between the parallel sections of a batch and for a
        # while after it, taking the cores that decode, preprocessing and the event loop need (per model:
        # config.json, `labelserve tune`).
        session = self._open(self._options(spinning=self._spinning))
        self._check_io(session)
        self._session = session
        if (self._lone_session and not self._spinning and self._providers == CPU_PROVIDERS
                and self._intra_op_threads != 1):
            # For a batch of one at an idle server nothing else wants the cores, so its threads may spin within the
            # batch (each parallel section then starts without a futex wake: the 96 px light model's batch of one
            # 1.8 -> 1.3 ms) and stop after it. Under load spinning took 12 % of the throughput, hence two sessions
            # rather than one that always spins.
            lone_options = self._options(spinning=True)
            lone_options.add_session_config_entry("session.force_spinning_stop", "1")
            self._lone = self._open(lone_options)
        warm_up(self, self._bundle.manifest, self._model_path)
        if self._lone is not None:
            self._run_session(self._lone, np.zeros((1, *self._bundle.manifest.input.shape), np.float32),
                              output_names(self._bundle.manifest))

    def _options(self, spinning: bool) -> ort.SessionOptions:
        """Both sessions' options: the intra-op threads asked for, one batch at a time, every graph optimisation."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._intra_op_threads
        options.inter_op_num_threads = 1  # one batch at a time; parallelism comes from intra-op threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        return options

    def _open(self, options: ort.SessionOptions) -> ort.InferenceSession:
        try:
            return ort.InferenceSession(str(self._model_path), sess_options=options, providers=list(self._providers))
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise EngineLoadError(f"onnxruntime cannot load {self._model_path}: {exc}") from exc

    def _check_io(self, session: ort.InferenceSession) -> None:
        manifest = self._bundle.manifest
        inputs = {i.name: i for i in session.get_inputs()}
        if manifest.input_name not in inputs:
            raise EngineLoadError(f"{self._model_path} has inputs {sorted(inputs)}, but the manifest says the input "
                                  f"is {manifest.input_name!r}")
        input_type = inputs[manifest.input_name].type
        if input_type not in _NUMPY_DTYPES:
            raise EngineLoadError(f"input {manifest.input_name!r} has type {input_type}; only float32/float16 work")
        self._input_dtype = _NUMPY_DTYPES[input_type]
        outputs = {o.name for o in session.get_outputs()}
        wanted = {manifest.outputs.logits.name}
        if manifest.outputs.attention is not None:
            wanted.add(manifest.outputs.attention.name)
        if missing := wanted - outputs:
            raise EngineLoadError(f"{self._model_path} lacks outputs {sorted(missing)} listed in the manifest")

    @property
    def has_lone_session(self) -> bool:
        """Whether a second, spinning session runs lone batches (`run_lone`)."""
        return self._lone is not None

    def run(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run one `[B, 3, H, W]` batch and return the requested outputs as float32 arrays."""
        if self._session is None:
            raise RuntimeError("OnnxRuntimeEngine.run called before load()")
        return self._run_session(self._session, batch, outputs)

    def run_lone(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """`run` for a batch the server had nothing else to do beside: on the spinning session where there is one."""
        if self._lone is None:
            return self.run(batch, outputs)
        return self._run_session(self._lone, batch, outputs)

    def _run_session(self, session: ort.InferenceSession, batch: np.ndarray,
                     outputs: Sequence[str]) -> dict[str, np.ndarray]:
        feed = {self._bundle.manifest.input_name: np.ascontiguousarray(batch, dtype=self._input_dtype)}
        results = session.run(list(outputs), feed)
        return {name: np.asarray(value, dtype=np.float32) for name, value in zip(outputs, results, strict=True)}

    def close(self) -> None:
        """Drop the sessions, so their memory (host or GPU) goes with the retired version."""
        self._session = None
        self._lone = None
