"""`PlanRunner`: a serialized TensorRT plan on one CUDA stream of one GPU, without PyTorch.

Input and output buffers are allocated once, at the largest batch of the plan's optimisation profile, in device
memory with page-locked host mirrors, so a batch costs two asynchronous copies and one `execute_async_v3`, and only
the outputs a batch asks for are copied back (attention maps are large). In the shared core because two floors run
it: the service's TensorRT engine serves with it and export's parity check measures with it, so what is checked is
what is served. tensorrt and cuda-bindings are imported only when a plan is opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from labelserve.engine_errors import EngineLoadError

__all__ = ["PlanRunner", "import_tensorrt"]


def import_tensorrt() -> tuple[Any, Any]:
    """tensorrt and the CUDA runtime helpers, or EngineLoadError saying what to install."""
    try:
        import tensorrt

        from labelserve import cuda_runtime
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
