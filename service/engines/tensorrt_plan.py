"""Native TensorRT engine: runs a bundle's serialized plan (`model.plan`) on its own CUDA stream, without PyTorch.

A plan is compiled for one GPU architecture by one TensorRT version, which the manifest records; a plan that does
not match this machine is refused with both sides named, before TensorRT is asked to deserialize it. Input and
output buffers are allocated once, at the largest batch of the plan's optimisation profile, in device memory with
page-locked host mirrors, so a batch costs two asynchronous copies and one `execute_async_v3`, and only the outputs
a batch asks for are copied back (attention maps are large).

`PlanRunner` knows only the plan; `TensorRTPlanEngine` adds the bundle's checks and warm-up. Export uses
`PlanRunner` for its parity check, so what is checked is what is served.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelserve.bundle import Bundle, EngineSpec
from service.engines.base import EngineInfo, EngineLoadError, output_names, warm_up

__all__ = ["PlanRunner", "TensorRTPlanEngine", "import_tensorrt", "plan_mismatch"]

logger = logging.getLogger(__name__)


def _release(version: str) -> tuple[int, ...]:
    """`10.13.3.9` -> (10, 13, 3): the build number does not change what a plan runs on."""
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def plan_mismatch(spec: EngineSpec, runtime_version: str, arch: str) -> str | None:
    """Why a plan cannot run here, or None if it can.

    Args:
        spec: the plan's manifest entry (records the architecture and TensorRT version it was built for).
        runtime_version: this machine's `tensorrt.__version__`.
        arch: this GPU's architecture, e.g. `sm_90`.
    """
    if spec.device is None or spec.runtime_version is None:
        return "the manifest does not say which GPU architecture and TensorRT version the plan was built for"
    problems = []
    if spec.device != arch:
        problems.append(f"it was built for {spec.device}, this GPU is {arch}")
    if _release(spec.runtime_version) != _release(runtime_version):
        problems.append(f"it was built with TensorRT {spec.runtime_version}, this machine has {runtime_version}")
    if not problems:
        return None
    return "; ".join(problems) + " (build a plan on this machine: labelserve export --tensorrt)"


def import_tensorrt() -> tuple[Any, Any]:
    """tensorrt and the CUDA runtime helpers, or EngineLoadError saying what to install."""
    try:
        import tensorrt

        from service.engines import cuda_runtime
    except ImportError as exc:
        raise EngineLoadError(f"the TensorRT engine needs the tensorrt and cuda-bindings packages (the gpu extra, or "
                              f"the Docker gpu image): {exc}") from exc
    return tensorrt, cuda_runtime


@dataclass
class _Tensor:
    """One input or output of the plan with its buffers, sized for the largest batch."""

    name: str
    dtype: np.dtype
    row_bytes: int  # bytes of one batch row
    device: Any  # cuda_runtime.DeviceBuffer
    host: Any  # cuda_runtime.PinnedArray


class PlanRunner:
    """Deserializes a plan and runs batches of 1..max_batch on one CUDA stream of one GPU."""

    def __init__(self, plan_path: Path, input_name: str, max_batch: int, device_index: int = 0) -> None:
        """Describe the runner; nothing touches the GPU until `open()`.

        Args:
            plan_path: serialized TensorRT engine.
            input_name: the plan's image input (`[B, 3, H, W]`).
            max_batch: largest batch to allocate for (capped by the plan's optimisation profile).
            device_index: which GPU.
        """
        self._plan_path = plan_path
        self._input_name = input_name
        self._requested_max_batch = max_batch
        self._device_index = device_index
        self.max_batch = max_batch
        self._cuda: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._tensors: dict[str, _Tensor] = {}

    @property
    def output_names(self) -> list[str]:
        """The plan's outputs, in its own order."""
        return [name for name in self._tensors if name != self._input_name]

    def open(self) -> None:
        """Deserialize the plan, check its input, allocate buffers at the largest batch and bind them.

        Raises:
            EngineLoadError: TensorRT or CUDA is missing, the plan does not deserialize, or its input or batch
                range is not what the manifest promises.
        """
        trt, cuda = import_tensorrt()
        self._cuda = cuda
        try:
            cuda.set_device(self._device_index)
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self._engine = runtime.deserialize_cuda_engine(self._plan_path.read_bytes())
            if self._engine is None:
                raise EngineLoadError(f"TensorRT {trt.__version__} could not deserialize {self._plan_path} (see the "
                                      f"TensorRT messages above)")
            self._check_input(trt)
            self._context = self._engine.create_execution_context()
            self._stream = cuda.Stream()
            self._allocate(trt)
        except cuda.CudaError as exc:
            self.close()
            raise EngineLoadError(f"CUDA refused the TensorRT engine for {self._plan_path}: {exc}") from exc
        except EngineLoadError:
            self.close()
            raise

    def _check_input(self, trt: Any) -> None:
        engine = self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != [self._input_name]:
            raise EngineLoadError(f"{self._plan_path} has inputs {inputs}; the manifest says the only input is "
                                  f"{self._input_name!r}")
        smallest, _, largest = engine.get_tensor_profile_shape(self._input_name, 0)
        if smallest[0] > 1:
            raise EngineLoadError(f"{self._plan_path} accepts batches of {smallest[0]} and more only; the batcher "
                                  f"sends single images")
        self.max_batch = min(self._requested_max_batch, int(largest[0]))

    def _allocate(self, trt: Any) -> None:
        engine, context, cuda = self._engine, self._context, self._cuda
        image_shape = tuple(engine.get_tensor_shape(self._input_name))[1:]
        context.set_input_shape(self._input_name, (self.max_batch, *image_shape))
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
            tensor = _Tensor(name=name, dtype=dtype, row_bytes=row_bytes, device=None, host=None)
            self._tensors[name] = tensor  # registered before allocating, so close() frees a partial allocation
            tensor.device = cuda.DeviceBuffer(row_bytes * self.max_batch)
            tensor.host = cuda.PinnedArray((self.max_batch, *shape[1:]), dtype)
            if not context.set_tensor_address(name, tensor.device.pointer):
                raise EngineLoadError(f"TensorRT refused the buffer address of {name!r}")

    def run(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Copy `batch` in, run the plan, copy the requested outputs back; all on the runner's stream."""
        if self._context is None:
            raise RuntimeError("PlanRunner.run called before open()")
        size = len(batch)
        if not 1 <= size <= self.max_batch:
            raise ValueError(f"batch of {size} is outside this plan's range 1..{self.max_batch}")
        self._cuda.set_device(self._device_index)  # CUDA's current device is per thread
        source = self._tensors[self._input_name]
        source.host.array[:size] = batch
        source.host.to_device(source.device, size * source.row_bytes, self._stream)
        if not self._context.set_input_shape(self._input_name, batch.shape):
            raise RuntimeError(f"TensorRT refused input shape {batch.shape}")
        if not self._context.execute_async_v3(self._stream.handle):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT messages above)")
        for name in outputs:
            target = self._tensors[name]
            target.host.from_device(target.device, size * target.row_bytes, self._stream)
        self._stream.synchronize()
        # copies: the pinned arrays are overwritten by the next batch
        return {name: self._tensors[name].host.array[:size].astype(np.float32) for name in outputs}

    def close(self) -> None:
        """Free the buffers, the stream and the TensorRT objects; safe to call more than once."""
        for tensor in self._tensors.values():
            for buffer in (tensor.host, tensor.device):
                if buffer is not None:
                    buffer.close()
        self._tensors = {}
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._context = None
        self._engine = None


class TensorRTPlanEngine:
    """Serves a bundle's TensorRT plan after checking it was built for this GPU and this TensorRT."""

    def __init__(self, bundle: Bundle, max_batch_size: int, device_index: int = 0) -> None:
        """Describe the engine; nothing is loaded until `load()`.

        Args:
            bundle: a verified model version that ships a TensorRT plan.
            max_batch_size: largest batch the batcher will send (capped by the plan's range).
            device_index: which GPU.
        """
        spec = bundle.manifest.engine("tensorrt")
        if spec is None:
            raise EngineLoadError(f"{bundle.path} ships no TensorRT plan (export with --tensorrt on a machine with "
                                  f"TensorRT); its engines are {[e.format for e in bundle.manifest.engines]}")
        self._bundle = bundle
        self._spec = spec
        self._device_index = device_index
        self._runner = PlanRunner(bundle.file(spec.file), bundle.manifest.input_name,
                                  min(max_batch_size, spec.max_batch), device_index)

    @property
    def info(self) -> EngineInfo:
        """Engine name, the GPU it runs on and the batch cap."""
        return EngineInfo(name="tensorrt", provider=f"cuda:{self._device_index}",
                          max_batch_size=self._runner.max_batch)

    def load(self) -> None:
        """Check the plan fits this machine, open it, check its outputs against the manifest, warm it up."""
        trt, cuda = import_tensorrt()
        try:
            arch = cuda.device_arch(self._device_index)
        except cuda.CudaError as exc:
            raise EngineLoadError(f"the TensorRT engine needs a CUDA GPU: {exc}") from exc
        if problem := plan_mismatch(self._spec, trt.__version__, arch):
            raise EngineLoadError(f"{self._bundle.path / self._spec.file} cannot run here: {problem}")
        self._runner.open()
        try:
            if missing := set(output_names(self._bundle.manifest)) - set(self._runner.output_names):
                raise EngineLoadError(f"the plan lacks outputs {sorted(missing)} listed in the manifest")
            warm_up(self, self._bundle.manifest, self._bundle.file(self._spec.file))
        except EngineLoadError:
            self._runner.close()
            raise
        logger.info("TensorRT %s plan on %s (cuda:%d), batches 1..%d", trt.__version__, arch, self._device_index,
                    self._runner.max_batch)

    def run(self, batch: np.ndarray, outputs: Sequence[str]) -> dict[str, np.ndarray]:
        """Run one `[B, 3, H, W]` batch and return the requested outputs as float32 arrays."""
        return self._runner.run(batch, outputs)

    def close(self) -> None:
        """Free the GPU memory and stream of this version (called when hot reload retires it)."""
        self._runner.close()
