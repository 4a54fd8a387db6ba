"""The service must start without torch, training or export (the serving image does not ship them); the native
TensorRT engine is torch-free too."""

from __future__ import annotations

import subprocess
import sys

_CHECK = """
import sys
import service.app, service.__main__, service.server, service.workers, service.repository
import service.engines.onnxruntime
import service.engines.tensorrt_plan, service.engines.cuda_runtime
service.app.create_app
bad = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "torchvision", "timm", "training", "export"})
assert not bad, bad
print("ok")
"""


def test_service_imports_no_torch_training_or_export() -> None:
    result = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
