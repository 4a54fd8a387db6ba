"""Closed-loop load against a running labelserve: images/s, latency percentiles and errors per concurrency.

    labelserve serve --repository models &        # or: make serve
    python -m bench.load --url http://127.0.0.1:8000 --concurrency 1 8 32

Each of `concurrency` clients posts one JPEG to /predict, waits for the JSON answer, and posts the next, for
`--seconds`; requests are encoded once up front (`labelserve_tools.loadgen`) so the client takes little of the CPU it
shares with the server. The server's own /metrics is scraped before and after to report the mean batch size it formed.
Prints a table and writes JSON (bench/results/load-*.json).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench._common import format_table, write_results
from bench.images import jpeg_payloads
from labelserve_tools.loadgen import run_level

__all__ = ["run_level"]

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", help="model name (default: the server's default model)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per concurrency level")
    parser.add_argument("--images", type=Path, help="folder of JPEGs (default: rendered synthetic scenes)")
    parser.add_argument("--image-size", type=int, default=256, help="side of the rendered scenes")
    parser.add_argument("--out", type=Path, help="JSON path (default: bench/results/load-<time>.json)")
    args = parser.parse_args()

    payloads = jpeg_payloads(64, args.image_size, folder=args.images)
    rows = []
    for concurrency in args.concurrency:
        result = run_level(args.url, concurrency, args.seconds, payloads, args.model)
        rows.append(result)
        print(f"concurrency {concurrency}: {result['images_per_s']:.1f} img/s, "
              f"p50 {result['latency']['p50_ms']:.1f} ms, errors {result['errors']}", flush=True)
    table = [{"concurrency": r["concurrency"], "img/s": r["images_per_s"], "p50 ms": r["latency"]["p50_ms"],
              "p90 ms": r["latency"]["p90_ms"], "p99 ms": r["latency"]["p99_ms"],
              "mean batch": r["mean_batch_size"], "errors": sum(r["errors"].values())} for r in rows]
    print()
    print(format_table(table, list(table[0])))
    path = write_results("load", {"url": args.url, "image_size": args.image_size, "rows": rows}, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
