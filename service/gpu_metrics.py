"""GPU memory and utilisation as Prometheus gauges, read from NVML at scrape time where NVML is available.

No NVML library or no NVIDIA driver (every CPU machine) means no GPU series, said once in the log; the rest of the
metrics are unaffected. `nvidia-ml-py` is an optional dependency (the `gpu` extra).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["GpuCollector", "register_gpu_metrics"]

logger = logging.getLogger(__name__)


class GpuCollector(Collector):
    """Per-GPU memory used/total (bytes) and utilisation (0..1), labelled by index and name."""

    def __init__(self, nvml: Any, handles: list[Any]) -> None:
        self._nvml = nvml
        self._handles = handles

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Read every GPU now; a GPU that fails to answer is skipped for this scrape."""
        used = GaugeMetricFamily("labelserve_gpu_memory_used_bytes", "GPU memory in use", labels=["gpu", "name"])
        total = GaugeMetricFamily("labelserve_gpu_memory_total_bytes", "GPU memory", labels=["gpu", "name"])
        busy = GaugeMetricFamily("labelserve_gpu_utilization_ratio", "Fraction of time the GPU was busy",
                                 labels=["gpu", "name"])
        for index, handle in enumerate(self._handles):
            try:
                name = str(self._nvml.nvmlDeviceGetName(handle))
                memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                rates = self._nvml.nvmlDeviceGetUtilizationRates(handle)
            except self._nvml.NVMLError as exc:
                logger.warning("NVML could not read GPU %d: %s", index, exc)
                continue
            labels = [str(index), name]
            used.add_metric(labels, float(memory.used))
            total.add_metric(labels, float(memory.total))
            busy.add_metric(labels, rates.gpu / 100.0)
        yield from (used, total, busy)


def register_gpu_metrics(registry: CollectorRegistry) -> bool:
    """Add the GPU gauges to `registry` when NVML works here; False (and one log line) when it does not."""
    try:
        import pynvml
    except ImportError:
        logger.info("no GPU metrics: nvidia-ml-py is not installed")
        return False
    try:
        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except pynvml.NVMLError as exc:
        logger.info("no GPU metrics: NVML is not available (%s)", exc)
        return False
    registry.register(GpuCollector(pynvml, handles))
    logger.info("GPU metrics on for %d GPU(s)", len(handles))
    return True
