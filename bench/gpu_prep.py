"""`make gpu-prep`: everything a GPU session carries, built and checked here, and the one device call to make.

  1. the wheels the device image lacks, for its Python (bench/gpu_wheels.py)                      -> .whl/
  2. the demo checkpoint and the bundles that travel, with torch programs (bench/gpu_bundles.py)  -> .cache/gpu-session/
  3. the size of what travels (the checkout's tracked and untracked-not-ignored files plus both) against the
     device's 64 MiB, with a quarter to spare
  4. the call to make, printed: command, carry list and timeout

    python -m bench.gpu_prep                          # trains the demo model first when .cache/demo has none (minutes)
    python -m bench.gpu_prep --demo-checkpoint runs/x/best.pt --root /tmp/copy     # another checkpoint, elsewhere
"""

from __future__ import annotations

import argparse
import filecmp
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.gpu_bundles import MODELS, QUIET_LOGGERS, SESSION_ROOT, ensure_bundles
from bench.gpu_wheels import download_wheels, read_device

__all__ = ["CALL", "LIMIT_MIB", "ROOM_MIB", "demo_checkpoint", "travel_sizes"]

REPO_ROOT = Path(__file__).resolve().parents[1]
WHEELS = Path(".whl")
LIMIT_MIB = 64  # what the device takes: the working tree plus the carried paths
ROOM_MIB = 16  # left spare: the checkout grows between the prep and the call, and the device counts on its side
# the session's own budget (GPU_SESSION_BUDGET_S, 520 s in bench/gpu_session.sh) plus its summary: under 9 minutes
CALL = {"command": "bash bench/gpu_session.sh", "carry": [str(WHEELS), str(SESSION_ROOT)], "timeout_s": 540}
_MIB = 1 << 20


def demo_checkpoint(given: Path | None, workdir: Path = REPO_ROOT / ".cache" / "demo") -> Path:
    """The checkpoint the demo bundle is exported from: `given`, or the demo recipe's (trained first if missing)."""
    if given is not None:
        if not given.is_file():
            raise FileNotFoundError(f"no checkpoint at {given}: pass a `labelserve train` best.pt")
        return given
    checkpoint = workdir / "run" / "best.pt"
    if not checkpoint.is_file():
        from export.demo import build_demo_model

        with tempfile.TemporaryDirectory(prefix="labelserve-demo-") as repository:
            build_demo_model(Path(repository), workdir, force=True)
    return checkpoint


def _place_checkpoint(checkpoint: Path, session: Path) -> None:
    """Copy the demo checkpoint into the session's sources; a different one makes the demo bundle there stale."""
    target = session / "sources" / "demo.pt"
    if target.is_file() and filecmp.cmp(checkpoint, target, shallow=False):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint, target)
    shutil.rmtree(session / "models" / "demo", ignore_errors=True)


def _tree_files(root: Path) -> list[Path]:
    """The files of the working tree that travel: tracked and untracked-not-ignored (every file, outside git)."""
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "-co", "--exclude-standard"],
                            capture_output=True, check=False)
    if listed.returncode == 0:
        return [root / name for name in listed.stdout.decode().split("\0") if name]
    carried = [root / path for path in CALL["carry"]]
    return [p for p in root.rglob("*") if not any(p.is_relative_to(c) for c in carried)]


def _size(paths: list[Path]) -> int:
    return sum(p.lstat().st_size for p in paths if p.is_symlink() or p.is_file())


def travel_sizes(root: Path) -> dict[str, int]:
    """Bytes per thing that travels: the working tree and each carried path."""
    sizes = {"working tree": _size(_tree_files(root))}
    for path in CALL["carry"]:
        sizes[path] = _size(list((root / path).rglob("*")))
    return sizes


def check_sizes(sizes: dict[str, int]) -> str:
    """One line on what travels; raises when it leaves less room than ROOM_MIB under the device's limit."""
    total = sum(sizes.values())
    parts = ", ".join(f"{name} {size / _MIB:.1f}" for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]))
    budget = LIMIT_MIB - ROOM_MIB
    if total > budget * _MIB:
        raise RuntimeError(f"what travels is {total / _MIB:.1f} MiB, over the {budget} MiB budget (the device takes "
                           f"{LIMIT_MIB} MiB; {ROOM_MIB} kept spare); largest first, MiB: {parts}")
    return f"travels: {total / _MIB:.1f} MiB of the device's {LIMIT_MIB} (budget {budget}), MiB: {parts}"


def prepare(root: Path, checkpoint: Path | None, wheels: bool = True) -> list[str]:
    """Steps 1-3 into checkout `root`; the lines to report."""
    lines = []
    if wheels:
        device = read_device()
        files = download_wheels(root / WHEELS, device)
        lines.append(f"wheels: {len(files)} in {WHEELS} for CPython {device['python']}, which the device lacks: "
                     + ", ".join(f.name.split("-")[0] for f in files))
    session = root / SESSION_ROOT
    _place_checkpoint(demo_checkpoint(checkpoint), session)
    for name, what in ensure_bundles(session, [m.name for m in MODELS if m.travels]).items():
        lines.append(f"{name}: {what}")
    lines += [f"{m.name}: built on the device by the session (its bundle does not travel)"
              for m in MODELS if not m.travels]
    lines.append(check_sizes(travel_sizes(root)))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the checkout the session will be called from")
    parser.add_argument("--demo-checkpoint", type=Path, help="export the demo bundle from this checkpoint")
    parser.add_argument("--no-wheels", action="store_true", help="leave .whl as it is (no network)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        lines = prepare(args.root.resolve(), args.demo_checkpoint, wheels=not args.no_wheels)
    except (RuntimeError, FileNotFoundError, ValueError, subprocess.CalledProcessError) as exc:
        sys.exit(f"gpu-prep: {exc}")
    print("\n".join(lines))
    print("\nthe device call (one; the session's steps stop themselves within 9 minutes):")
    print(f"  run(command={json.dumps(CALL['command'])}, carry={json.dumps(CALL['carry'])}, "
          f"timeout_s={CALL['timeout_s']})")
    print(json.dumps(CALL))


if __name__ == "__main__":
    main()
