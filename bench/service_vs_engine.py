"""The service against the engine, like with like, in one run: how much of the raw engine's throughput survives
HTTP, multipart parsing, JPEG decode, preprocessing, dynamic batching and JSON, with batching on and off.

    python -m bench.service_vs_engine --repository models --model demo --batch 16 --concurrency 1 8 32

Measured back to back on the same JPEGs, at batch 1 and batch B:
  raw       a plain onnxruntime session with its defaults (threads spin between runs) on ready tensors (the ceiling)
  engine    the service's own engine class and settings on ready tensors (onnxruntime: no spinning, so the threads
            leave the cores to decoding between batches)
  pipeline  decode + preprocess + that engine in-process                          (what a batch job gets)
  service   `python -m service`, closed-loop single-image requests (JPEG in, JSON out) at each concurrency, once
            with dynamic batching (LABELSERVE_MAX_BATCH_SIZE=B) and once without (max batch 1); the load client
            shares the machine
Prints a table with each row's throughput over the ceiling at batch B, and each service row's p50 over the
ceiling's single-image p50; writes JSON (bench/results/service_vs_engine-*.json).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import format_table, write_results
from bench.engine import bench_batch, open_session, session_runner, time_engine
from bench.images import jpeg_payloads
from bench.load import run_level
from labelserve.bundle import list_versions, load_bundle
from labelserve.local_server import start_server


def _in_process(repository: Path, model: str, batches: list[int], seconds: float, payloads: list[bytes],
                engine: str, jpeg_decode: str) -> dict[int, dict[str, Any]]:
    """Per batch size: the engine as the service runs it (its own engine class and settings), the pipeline around
    it, and for onnxruntime also a raw session with onnxruntime's defaults (spinning threads: the ceiling)."""
    from service.engines import create_engine

    version = list_versions(repository / model)[-1]
    bundle = load_bundle(repository / model / str(version))
    outputs = [bundle.manifest.outputs.logits.name]
    served = create_engine(bundle, max_batch_size=max(batches), engine=engine)
    served.load()
    run = lambda tensors: served.run(tensors, outputs)  # noqa: E731
    prepare = None
    if jpeg_decode == "torch":  # the service's own torch JPEG path, on the same device it would use
        from service.pipeline.torch_jpeg import TorchJpegPreprocessor, torch_device

        prepare = TorchJpegPreprocessor(bundle.manifest.input, torch_device("auto"))
    results = {batch: bench_batch(run, bundle.manifest.input, payloads, batch, seconds, prepare)
               for batch in batches}
    served.close()
    if engine == "onnxruntime":
        raw = session_runner(open_session(bundle.file("model.onnx"), threads=0), outputs)
        for batch, result in results.items():
            tensors = np.random.default_rng(0).standard_normal((batch, *bundle.manifest.input.shape),
                                                                dtype=np.float32)
            timing = time_engine(raw, tensors, seconds)
            result["raw_engine_images_per_s"], result["raw_engine_latency"] = timing["images_per_s"], timing["latency"]
    return results


def _service(repository: Path, model: str, max_batch: int, concurrencies: list[int], seconds: float,
             queue_delay_ms: float, payloads: list[bytes], engine: str, jpeg_decode: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as logs:
        server = start_server(repository, Path(logs), max_batch_size=str(max_batch),
                              max_queue_delay_ms=str(queue_delay_ms), repository_poll_s="0", engine=engine,
                              jpeg_decode=jpeg_decode)
        try:
            return [run_level(server.url, c, seconds, payloads, model) for c in concurrencies]
        finally:
            server.stop()


def _rows(in_process: dict[int, dict[str, Any]], services: dict[str, list[dict[str, Any]]],
          batch: int) -> list[dict[str, Any]]:
    ceiling = "raw_engine" if "raw_engine_images_per_s" in in_process[batch] else "engine"
    engine_ips = in_process[batch][f"{ceiling}_images_per_s"]
    engine_p50_single = in_process[1][f"{ceiling}_latency"]["p50_ms"]
    labels = {"raw_engine": "raw onnxruntime session (defaults, spinning)", "engine": "engine as served",
              "pipeline": "pipeline (decode + preprocess + engine as served)"}
    rows = []
    for size, result in sorted(in_process.items()):
        for kind, label in labels.items():
            if f"{kind}_images_per_s" not in result:
                continue
            rows.append({"path": f"{label}, batch {size}", "img/s": result[f"{kind}_images_per_s"],
                         "p50 ms": result[f"{kind}_latency"]["p50_ms"], "p99 ms": result[f"{kind}_latency"]["p99_ms"],
                         "x engine": result[f"{kind}_images_per_s"] / engine_ips})
    for label, levels in services.items():
        for level in levels:
            rows.append({"path": f"service {label}, c={level['concurrency']} (mean batch "
                                 f"{level['mean_batch_size']:.1f})",
                         "img/s": level["images_per_s"], "p50 ms": level["latency"]["p50_ms"],
                         "p99 ms": level["latency"]["p99_ms"], "x engine": level["images_per_s"] / engine_ips,
                         "p50 - engine p50 (b=1) ms": level["latency"]["p50_ms"] - engine_p50_single,
                         "errors": sum(level["errors"].values())})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="demo")
    parser.add_argument("--batch", type=int, default=16, help="engine batch size = the service's max batch size")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per figure")
    parser.add_argument("--queue-delay-ms", type=float, default=5.0, help="the service's max_queue_delay_ms")
    parser.add_argument("--images", type=Path, help="folder of JPEGs (default: rendered synthetic scenes)")
    parser.add_argument("--image-size", type=int, default=256, help="side of the rendered scenes")
    parser.add_argument("--engine", choices=["onnxruntime", "tensorrt", "torch"], default="onnxruntime",
                        help="tensorrt: the bundle's plan (export --tensorrt); torch: its torch.export program, on "
                             "CUDA when present")
    parser.add_argument("--jpeg-decode", choices=["pillow", "torch"], default="pillow",
                        help="torch: JPEGs decoded and preprocessed by torch (nvJPEG on a GPU), in the pipeline and "
                             "in the service")
    parser.add_argument("--out", type=Path, help="JSON path")
    args = parser.parse_args()

    payloads = jpeg_payloads(64, args.image_size, folder=args.images)
    print(f"[1/3] engine and in-process pipeline at batch 1 and {args.batch} ...", flush=True)
    in_process = _in_process(args.repository, args.model, sorted({1, args.batch}), args.seconds, payloads,
                             args.engine, args.jpeg_decode)
    services = {}
    for step, (label, max_batch) in enumerate((("batching", args.batch), ("no batching", 1)), start=2):
        print(f"[{step}/3] service, {label}, concurrency {args.concurrency} ...", flush=True)
        services[label] = _service(args.repository, args.model, max_batch, args.concurrency, args.seconds,
                                   args.queue_delay_ms, payloads, args.engine, args.jpeg_decode)

    rows = _rows(in_process, services, args.batch)
    print()
    print(format_table(rows, ["path", "img/s", "p50 ms", "p99 ms", "x engine", "p50 - engine p50 (b=1) ms",
                              "errors"]))
    path = write_results("service_vs_engine", {
        "model": args.model, "engine": args.engine, "jpeg_decode": args.jpeg_decode, "batch": args.batch,
        "concurrency": args.concurrency,
        "image_size": args.image_size,
        "queue_delay_ms": args.queue_delay_ms, "in_process": {str(k): v for k, v in in_process.items()},
        "service": services, "rows": rows,
    }, args.out)
    print(f"\nx engine = images/s over the ceiling's at batch {args.batch} (onnxruntime: the raw session); "
          f"wrote {path}")


if __name__ == "__main__":
    main()
