"""The CUDA helpers of the TensorRT engine: on a GPU, page-locked host memory round-trips through device memory on
a stream; without one, every call fails as CudaError carrying CUDA's own reason (which the engine then reports)."""

from __future__ import annotations

import numpy as np
import pytest

cuda_runtime = pytest.importorskip("labelserve.cuda_runtime", reason="cuda-bindings is not installed")
from cuda.bindings import runtime as cudart  # noqa: E402

_COUNT = cudart.cudaGetDeviceCount()
_HAS_GPU = _COUNT[0] == cudart.cudaError_t.cudaSuccess and _COUNT[1] > 0


@pytest.mark.skipif(_HAS_GPU, reason="a GPU is visible; the round-trip test covers this machine")
def test_without_a_gpu_calls_fail_with_cudas_reason() -> None:
    with pytest.raises(cuda_runtime.CudaError, match=r"cudaGetDeviceProperties\(0\) failed: cudaError\w+: \w+"):
        cuda_runtime.device_arch()
    with pytest.raises(cuda_runtime.CudaError, match="cudaMallocHost"):
        cuda_runtime.PinnedArray((2, 3), np.float32)


@pytest.mark.gpu
@pytest.mark.skipif(not _HAS_GPU, reason=f"needs a CUDA GPU; cudaGetDeviceCount says {_COUNT[0].name}")
def test_pinned_memory_round_trips_through_the_device_on_a_stream() -> None:
    assert cuda_runtime.device_arch().startswith("sm_")
    stream = cuda_runtime.Stream()
    source = cuda_runtime.PinnedArray((4, 3, 8, 8), np.float32)
    target = cuda_runtime.PinnedArray((4, 3, 8, 8), np.float32)
    device = cuda_runtime.DeviceBuffer(source.array.nbytes)
    try:
        source.array[:] = np.arange(source.array.size, dtype=np.float32).reshape(source.array.shape)
        target.array[:] = -1
        half = source.array.nbytes // 2  # rows 0-1 only, as the engine copies only a batch's rows
        source.to_device(device, half, stream)
        target.from_device(device, half, stream)
        stream.synchronize()
        np.testing.assert_array_equal(target.array[:2], source.array[:2])
        assert (target.array[2:] == -1).all()
    finally:
        for resource in (device, source, target, stream):
            resource.close()
        device.close()  # a second close is harmless
