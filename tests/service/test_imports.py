"""The service must start without torch, training, export or the tools (the serving image ships no torch); the
native TensorRT engine and the optional torch backends are torch-free until used, since they import torch inside
functions. import-linter sees those lazy imports as imports (its contracts in pyproject.toml name them as the
only exceptions); this test checks what it cannot: that importing every module of the service loads none of them."""

from __future__ import annotations

import subprocess
import sys

_CHECK = """
import importlib, pkgutil, sys
import service
for module in pkgutil.walk_packages(service.__path__, "service."):
    importlib.import_module(module.name)
import labelserve.plan_runner, labelserve.cuda_runtime
import service.app
service.app.create_app
forbidden = {"torch", "torchvision", "torchcodec", "timm", "training", "export", "labelserve_tools"}
bad = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
assert not bad, bad
assert "service.engines.torch_program" in sys.modules and "service.pipeline.torch_jpeg" in sys.modules
print("ok")
"""


def test_no_module_of_the_service_imports_torch_training_export_or_the_tools() -> None:
    result = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
