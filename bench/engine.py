"""Raw onnxruntime throughput per batch size, beside the in-process pipeline (JPEG decode + preprocess + engine).

    python -m bench.engine --repository models --model demo --batch-sizes 1 8 32

Prints a table and writes JSON (bench/results/engine-*.json). The pipeline column is what a service could reach at
best with the same engine: it is the like-for-like reference for bench/load.py.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench._common import format_table, percentiles_ms, write_results
from bench.images import jpeg_payloads
from labelserve.bundle import list_versions, load_bundle
from labelserve.preprocess import PreprocessSpec
from service.pipeline import DecodeLimits, decode_image, to_network_input


def open_session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


_NO_LIMITS = DecodeLimits(max_image_bytes=1 << 40, max_image_pixels=1 << 40)


def _decode_preprocess(payload: bytes, spec: PreprocessSpec) -> np.ndarray:
    """The service's own decode and preprocessing, so the pipeline figure is like for like with the service's."""
    return to_network_input(decode_image(payload, "payload", _NO_LIMITS, spec=spec), spec)


def _timed_loop(step: Callable[[], object], seconds: float) -> tuple[list[float], float]:
    """Call `step()` repeatedly for about `seconds`; each call's duration, and the CPU seconds the whole process
    (every thread, onnxruntime's included) spent meanwhile."""
    durations = []
    cpu_started = time.process_time()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        step()
        durations.append(time.perf_counter() - started)
    return durations, time.process_time() - cpu_started


def session_runner(session: ort.InferenceSession, outputs: list[str]) -> Callable[[np.ndarray], object]:
    """`batch -> outputs` for an onnxruntime session."""
    input_name = session.get_inputs()[0].name
    return lambda tensors: session.run(outputs, {input_name: tensors})


def time_engine(run: Callable[[np.ndarray], object], tensors: np.ndarray, seconds: float) -> dict:
    """Images/s, per-batch latency and CPU seconds per image of `run` on ready tensors (after one warm-up call)."""
    run(tensors)
    durations, cpu_s = _timed_loop(lambda: run(tensors), seconds)
    images = len(tensors) * len(durations)
    return {"images_per_s": images / sum(durations), "latency": percentiles_ms(durations),
            "cpu_s_per_image": cpu_s / images}


def bench_batch(run: Callable[[np.ndarray], object], spec: PreprocessSpec, payloads: list[bytes], batch: int,
                seconds: float, prepare: Callable[[bytes], np.ndarray] | None = None) -> dict:
    """Engine-only and decode+preprocess+engine throughput at one batch size; `run` executes one batch (and
    returns host arrays, so GPU work is finished when it returns); `prepare` turns a JPEG into the network input
    (default: the service's Pillow/simplejpeg path)."""
    prepare = prepare or (lambda payload: _decode_preprocess(payload, spec))
    engine = time_engine(run, np.stack([prepare(p) for p in payloads[:batch]]), seconds)  # warms this shape up too
    cursor = iter(range(10**9))

    def pipeline_step() -> None:
        start = next(cursor) * batch
        chunk = [payloads[(start + i) % len(payloads)] for i in range(batch)]
        run(np.stack([prepare(p) for p in chunk]))

    pipeline, pipeline_cpu_s = _timed_loop(pipeline_step, seconds)
    return {
        "batch": batch,
        "engine_images_per_s": engine["images_per_s"],
        "engine_latency": engine["latency"],
        "engine_cpu_s_per_image": engine["cpu_s_per_image"],
        "pipeline_images_per_s": batch * len(pipeline) / sum(pipeline),
        "pipeline_latency": percentiles_ms(pipeline),
        "pipeline_cpu_s_per_image": pipeline_cpu_s / (batch * len(pipeline)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="demo")
    parser.add_argument("--version", type=int, help="default: newest")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per batch size and mode")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = its default)")
    parser.add_argument("--attention", action="store_true", help="fetch the attention output too")
    parser.add_argument("--images", type=Path, help="folder of JPEGs (default: rendered synthetic scenes)")
    parser.add_argument("--image-size", type=int, default=256, help="side of the rendered scenes")
    parser.add_argument("--out", type=Path, help="JSON path (default: bench/results/engine-<time>.json)")
    args = parser.parse_args()

    version = args.version or list_versions(args.repository / args.model)[-1]
    bundle = load_bundle(args.repository / args.model / str(version))
    spec = bundle.manifest.input
    session = open_session(bundle.file("model.onnx"), args.threads)
    outputs = ["logits", "attention"] if args.attention and bundle.manifest.outputs.attention else ["logits"]
    payloads = jpeg_payloads(max(args.batch_sizes) * 2, args.image_size, folder=args.images)
    rows = []
    for batch in args.batch_sizes:
        result = bench_batch(session_runner(session, outputs), spec, payloads, batch, args.seconds)
        rows.append(result)
        print(f"batch {batch}: engine {result['engine_images_per_s']:.1f} img/s, "
              f"pipeline {result['pipeline_images_per_s']:.1f} img/s", flush=True)
    table = [{"batch": r["batch"], "engine img/s": r["engine_images_per_s"],
              "engine p50 ms": r["engine_latency"]["p50_ms"], "pipeline img/s": r["pipeline_images_per_s"],
              "pipeline p50 ms": r["pipeline_latency"]["p50_ms"]} for r in rows]
    print()
    print(format_table(table, list(table[0])))
    path = write_results("engine", {"model": args.model, "version": version, "outputs": outputs,
                                    "threads": args.threads, "image_size": args.image_size, "rows": rows}, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
