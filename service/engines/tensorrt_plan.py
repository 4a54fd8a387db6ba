"""Native TensorRT engine: runs a bundle's serialized plan (`model.plan`) on its own CUDA stream, without PyTorch.

A plan is compiled for one GPU architecture by one TensorRT version, which the manifest records; a plan that does
not match this machine is refused with both sides named, before TensorRT is asked to deserialize it.

`labelserve.plan_runner.PlanRunner` knows only the plan (export's parity check runs it too, so what is checked is
what is served); `TensorRTPlanEngine` adds the bundle's checks and warm-up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from labelserve.bundle import Bundle, EngineSpec
from labelserve.plan_runner import PlanRunner, import_tensorrt
from service.engines.base import EngineInfo, EngineLoadError, output_names, warm_up

__all__ = ["TensorRTPlanEngine", "plan_mismatch"]

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
