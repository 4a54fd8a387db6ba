"""The few CUDA runtime calls the native TensorRT engine needs, through NVIDIA's `cuda-bindings` (no PyTorch).

cuda-bindings returns `(error, value...)` tuples instead of raising; `_call` turns a failed call into `CudaError` with
the driver's own words, so "no GPU" and "driver too old" reach the log as what they are. Buffers and streams are
freed explicitly by `close()` (the engine owns them for the life of a model version).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
from cuda.bindings import runtime as cudart

__all__ = ["CudaError", "DeviceBuffer", "PinnedArray", "Stream", "device_arch", "set_device"]


class CudaError(RuntimeError):
    """A CUDA runtime call failed; the message carries the runtime's error name and description."""


def _call(result: tuple[Any, ...], what: str) -> Any:
    """The value(s) of a cuda-bindings call, or CudaError naming `what` failed and why."""
    error, *values = result
    if error != cudart.cudaError_t.cudaSuccess:
        _, description = cudart.cudaGetErrorString(error)
        raise CudaError(f"{what} failed: {error.name}: {description.decode(errors='replace')}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def set_device(index: int) -> None:
    """Make GPU `index` current for this thread (the batcher's engine thread calls CUDA only after this)."""
    _call(cudart.cudaSetDevice(index), f"cudaSetDevice({index})")


def device_arch(index: int = 0) -> str:
    """The GPU's architecture as `sm_<major><minor>` (e.g. `sm_90` for an H100): what a TensorRT plan is tied to."""
    properties = _call(cudart.cudaGetDeviceProperties(index), f"cudaGetDeviceProperties({index})")
    return f"sm_{properties.major}{properties.minor}"


class Stream:
    """A CUDA stream: the engine's copies and kernels are queued here, not on the legacy default stream."""

    def __init__(self) -> None:
        self._stream = _call(cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreate")

    @property
    def handle(self) -> int:
        """The raw `cudaStream_t` as an integer, as TensorRT's `execute_async_v3` takes it."""
        return int(self._stream)

    @property
    def raw(self) -> Any:
        """The cuda-bindings stream object, for the runtime calls here."""
        return self._stream

    def synchronize(self) -> None:
        """Wait until everything queued on the stream has finished."""
        _call(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self) -> None:
        """Destroy the stream (once)."""
        if self._stream is not None:
            _call(cudart.cudaStreamDestroy(self._stream), "cudaStreamDestroy")
            self._stream = None


class DeviceBuffer:
    """`nbytes` of GPU memory, allocated once at load time at the largest batch's size."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.pointer: int = int(_call(cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes})"))

    def close(self) -> None:
        """Free the memory (once)."""
        if self.pointer:
            _call(cudart.cudaFree(self.pointer), "cudaFree")
            self.pointer = 0


class PinnedArray:
    """A NumPy array in page-locked host memory, so host<->device copies run at full PCIe speed and asynchronously."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype | type[np.generic]) -> None:
        self.dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        nbytes = max(count * self.dtype.itemsize, 1)
        self.pointer: int = int(_call(cudart.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})"))
        raw = (ctypes.c_byte * nbytes).from_address(self.pointer)
        self.array: np.ndarray = np.frombuffer(raw, dtype=self.dtype, count=count).reshape(shape)

    def to_device(self, device: DeviceBuffer, nbytes: int, stream: Stream) -> None:
        """Queue a copy of the first `nbytes` of this array to `device` on `stream`."""
        _call(cudart.cudaMemcpyAsync(device.pointer, self.pointer, nbytes,
                                     cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.raw), "cudaMemcpyAsync H2D")

    def from_device(self, device: DeviceBuffer, nbytes: int, stream: Stream) -> None:
        """Queue a copy of the first `nbytes` of `device` into this array on `stream`."""
        _call(cudart.cudaMemcpyAsync(self.pointer, device.pointer, nbytes,
                                     cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.raw), "cudaMemcpyAsync D2H")

    def close(self) -> None:
        """Free the page-locked memory (once); the array must not be used afterwards."""
        if self.pointer:
            self.array = np.empty(0, dtype=self.dtype)
            _call(cudart.cudaFreeHost(self.pointer), "cudaFreeHost")
            self.pointer = 0
