"""What attention maps cost a /predict request, as a client on a kept-alive connection sees it.

    python -m bench.attention --model demo

One client, one image per request, no pause, on scikit-learn's 640x427 `china.jpg` and on a 128 px synthetic scene:
/predict without attention, then with `attention=true` in each format the service offers (`png`, the default, and
`array`, the raw maps as numbers), with the server's default settings. Reported per image and variant: p50 and p99
latency, response bytes, and the predicted labels' count (the maps returned). Prints a table and writes JSON
(bench/results/attention-*.json).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench._common import format_table, write_results
from bench.models import DEFAULT_REPOSITORY, ensure_model
from bench.servers import serve
from labelserve_tools.loadgen import Connection, multipart_request, percentiles_ms

VARIANTS: dict[str, dict[str, str]] = {
    "no attention": {},
    "attention, png": {"attention": "true", "attention_format": "png"},
    "attention, array": {"attention": "true", "attention_format": "array"},
}


def _images() -> dict[str, bytes]:
    from sklearn.datasets import load_sample_image

    from training.data.synthetic import render_scene

    china = io.BytesIO()
    Image.fromarray(load_sample_image("china.jpg")).save(china, format="JPEG", quality=90)
    scene = io.BytesIO()
    render_scene(np.random.default_rng([123, 3]), 128)[0].save(scene, format="JPEG", quality=90)
    return {"china.jpg (640x427)": china.getvalue(), "scene (128x128)": scene.getvalue()}


async def _measure(url: str, request: bytes, seconds: float) -> dict[str, Any]:
    connection = Connection(url)
    await connection.send(request)  # warm-up
    latencies, size, maps = [], 0, 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        response = await connection.send(request)
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"/predict answered {response.status}: {response.body[:300]!r}")
        size = len(response.body)
        result = json.loads(response.body)["results"][0]
        maps = len(result.get("attention") or result.get("attention_maps") or {})  # png maps, or the arrays
    await connection.close()
    return {"latency": percentiles_ms(latencies), "response_bytes": size, "maps": maps, "requests": len(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--model", default="demo")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per image and variant")
    parser.add_argument("--out", type=Path, help="JSON path (default: bench/results/attention-<time>.json)")
    args = parser.parse_args()

    ensure_model(args.repository, args.model)
    rows = []
    with serve("labelserve", args.repository, args.model) as server:
        for image, data in _images().items():
            for variant, fields in VARIANTS.items():
                request = multipart_request(server.url, "/predict", "image.jpg", data, fields or None)
                result = asyncio.run(_measure(server.url, request, args.seconds))
                rows.append({"image": image, "variant": variant, **result})
                print(f"{image}, {variant}: p50 {result['latency']['p50_ms']:.1f} ms, "
                      f"{result['response_bytes']} bytes", flush=True)
    table = [{"image": r["image"], "variant": r["variant"], "p50 ms": r["latency"]["p50_ms"],
              "p99 ms": r["latency"]["p99_ms"], "bytes": r["response_bytes"], "maps": r["maps"]} for r in rows]
    print()
    print(format_table(table, list(table[0])))
    path = write_results("attention", {"model": args.model, "seconds": args.seconds, "rows": rows}, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
