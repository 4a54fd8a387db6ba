"""The service against the engine, like with like, in one run: how much of the raw engine's throughput survives
HTTP, multipart parsing, JPEG decode, preprocessing, dynamic batching and JSON.

    python -m bench.service_vs_engine --repository models --model demo --batch 16 --concurrency 32

Three figures at the same batch size, on the same JPEGs, measured back to back:
  engine    onnxruntime on ready tensors, batch B                      (the ceiling)
  pipeline  decode + preprocess + engine in-process, batch B           (what a batch job gets)
  service   `python -m service` with LABELSERVE_MAX_BATCH_SIZE=B, closed-loop load at `concurrency`
            single-image requests (JPEG in, JSON out; the load client shares the machine)
Prints a table with the ratios and writes JSON (bench/results/service_vs_engine-*.json).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench._common import format_table, write_results
from bench.engine import bench_batch, open_session
from bench.images import jpeg_payloads
from bench.load import run_level
from labelserve.bundle import list_versions, load_bundle
from labelserve.local_server import start_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--model", default="demo")
    parser.add_argument("--batch", type=int, default=16, help="engine batch size = the service's max batch size")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per figure")
    parser.add_argument("--queue-delay-ms", type=float, default=5.0, help="the service's max_queue_delay_ms")
    parser.add_argument("--images", type=Path, help="folder of JPEGs (default: rendered synthetic scenes)")
    parser.add_argument("--image-size", type=int, default=256, help="side of the rendered scenes")
    parser.add_argument("--out", type=Path, help="JSON path")
    args = parser.parse_args()

    version = list_versions(args.repository / args.model)[-1]
    bundle = load_bundle(args.repository / args.model / str(version))
    payloads = jpeg_payloads(64, args.image_size, folder=args.images)

    print(f"[1/2] engine and in-process pipeline at batch {args.batch} ...", flush=True)
    session = open_session(bundle.file("model.onnx"), threads=0)
    in_process = bench_batch(session, bundle.manifest.input, payloads, args.batch, args.seconds,
                             [bundle.manifest.outputs.logits.name])
    del session  # free its threads before the server starts

    print(f"[2/2] service at concurrency {args.concurrency}, max batch {args.batch} ...", flush=True)
    with tempfile.TemporaryDirectory() as logs:
        server = start_server(args.repository, Path(logs), max_batch_size=str(args.batch),
                              max_queue_delay_ms=str(args.queue_delay_ms))
        try:
            service = run_level(server.url, args.concurrency, args.seconds, payloads, args.model)
        finally:
            server.stop()

    engine_ips, pipeline_ips = in_process["engine_images_per_s"], in_process["pipeline_images_per_s"]
    service_ips = service["images_per_s"]
    table = [
        {"path": f"engine (batch {args.batch})", "img/s": engine_ips, "p50 ms": in_process["engine_latency"]["p50_ms"],
         "vs engine": 1.0},
        {"path": f"pipeline (batch {args.batch})", "img/s": pipeline_ips,
         "p50 ms": in_process["pipeline_latency"]["p50_ms"], "vs engine": pipeline_ips / engine_ips},
        {"path": f"service (c={args.concurrency}, mean batch {service['mean_batch_size']:.1f})", "img/s": service_ips,
         "p50 ms": service["latency"]["p50_ms"], "vs engine": service_ips / engine_ips},
    ]
    print()
    print(format_table(table, list(table[0])))
    print(f"\nservice / pipeline = {service_ips / pipeline_ips:.2f}; service errors: {service['errors'] or 'none'}")
    path = write_results("service_vs_engine", {
        "model": args.model, "version": version, "batch": args.batch, "concurrency": args.concurrency,
        "image_size": args.image_size, "in_process": in_process, "service": service,
        "ratios": {"service_over_engine": service_ips / engine_ips, "service_over_pipeline": service_ips / pipeline_ips,
                   "pipeline_over_engine": pipeline_ips / engine_ips},
    }, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
