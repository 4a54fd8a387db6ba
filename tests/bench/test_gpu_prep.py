"""The parts of the GPU session's preparation that decide without the network: what the device has (its docs), which
torchcodec runs on its torch, whether a bundle serves there, and whether what travels fits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.gpu_bundles import stale_reason
from bench.gpu_prep import LIMIT_MIB, ROOM_MIB, check_sizes, travel_sizes
from bench.gpu_wheels import _torch_built_pin, parse_device_docs
from labelserve.bundle import Bundle

_DOCS = """| pip list, as a session saw it | 2026-11, in sessions' own output there: python3 is Python 3.12.3, at \
/opt/x. One session's pip list, filtered by the names it asked for: numpy 2.5.2, onnx-ir 1.0.0, torch 2.11.0 |

## Python packages already there

nvidia-h200: their image, 'cuda', holds these, as last read on a machine running it on 2026-11-17. Packages: absl-py, \
numpy, onnx-ir, Pillow, torch, typing_extensions.
"""

_TABLE = """| `torchcodec`       | `torch`            | Python              |
| ------------------ | ------------------ | ------------------- |
| `main` / `nightly` | `main` / `nightly` | `>=3.10`, `<=3.14`   |
| `0.16`             | `>=2.11`             | `>=3.10`, `<=3.14`   |
| `0.11`             | `2.11`             | `>=3.10`, `<=3.14`   |
| `0.10`             | `2.10`             | `>=3.10`, `<=3.14`   |
"""


def _resolved(version: str) -> dict:
    return {"metadata": {"name": "torchcodec", "version": version, "description": _TABLE}}


def test_the_device_docs_give_its_python_packages_and_known_versions() -> None:
    device = parse_device_docs(_DOCS)
    assert device["python"] == "3.12.3" and device["read"] == "2026-11-17"
    assert device["packages"] == {"absl-py": None, "numpy": "2.5.2", "onnx-ir": "1.0.0", "pillow": None,
                                  "torch": "2.11.0", "typing-extensions": None}
    with pytest.raises(ValueError, match=r"has KINDS\.md changed shape"):
        parse_device_docs(_DOCS.replace("Packages:", "Listed:"))


def test_torchcodec_is_held_to_a_release_its_table_says_runs_on_the_devices_torch() -> None:
    assert _torch_built_pin(_resolved("0.16.0"), "2.11.0") is None
    assert _torch_built_pin(_resolved("0.17.0"), "2.11.0") == "torchcodec==0.16.*"  # 0.17 is not in its own table
    assert _torch_built_pin(_resolved("0.17.0"), "2.10.1") == "torchcodec==0.10.*"
    with pytest.raises(RuntimeError, match=r"no torchcodec release .* runs on torch 2\.8\.0"):
        _torch_built_pin(_resolved("0.17.0"), "2.8.0")


def test_a_bundle_serves_the_session_only_with_a_program_written_by_the_versions_here(tiny_bundle: Bundle) -> None:
    assert stale_reason(tiny_bundle) is None
    manifest = tiny_bundle.manifest
    older = manifest.model_copy(update={"producer": {**manifest.producer, "torch": "2.11.0"}})
    assert "written by torch 2.11.0" in stale_reason(Bundle(tiny_bundle.path, older))
    onnx_only = manifest.model_copy(update={"engines": tuple(e for e in manifest.engines if e.format == "onnx")})
    assert stale_reason(Bundle(tiny_bundle.path, onnx_only)) == "it ships no torch program"


def test_what_travels_over_the_budget_is_refused_in_one_line_naming_the_largest(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "code.py").write_text("x = 1\n")
    (tmp_path / ".whl").mkdir()
    with (tmp_path / ".whl" / "big.whl").open("wb") as handle:
        handle.truncate((LIMIT_MIB - ROOM_MIB - 10) << 20)
    assert check_sizes(travel_sizes(tmp_path)).startswith("travels: 38.0 MiB")
    (tmp_path / ".cache" / "gpu-session").mkdir(parents=True)
    os.truncate(tmp_path / ".whl" / "big.whl", (LIMIT_MIB - ROOM_MIB + 1) << 20)
    with pytest.raises(RuntimeError) as refused:
        check_sizes(travel_sizes(tmp_path))
    message = str(refused.value)
    assert "\n" not in message and "over the 48 MiB budget" in message and "largest first, MiB: .whl 49.0" in message
