"""Where a lone request's time goes: one client, one image at a time, timed by the service's own trace spans.

    python -m bench.request_timeline --out bench/results/request-timeline.json
    python -m bench.request_timeline --models light-q2l --settings lone_session=false --seconds 5

The server is the service itself with tracing on (service/tracing.py's spans), started through this module's
`serve` command so that the spans go to a JSON-lines file rather than to OTLP. The client, the project's raw
keep-alive one (labelserve_tools.loadgen), posts one 640x480 JPEG at a time to /predict. Each request's spans give
its timeline inside the server: body read, admission wait, decode, queue wait, engine batch (linked to the request),
encode; the gaps between them are the work no span names: routing, multipart parsing and the hand-off to a decode
thread before the decode; the hand-off to the engine thread and back around the engine; postprocessing, the
store's commit and the response after it. The client's latency minus the server span is the connection and the
client. Prints medians per model and variant (settings after a colon: `labelserve:lone_session=false`) and writes
JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._common import format_table, write_results
from bench.images import photo_payloads
from bench.models import DEFAULT_REPOSITORY, LIGHT_MODEL, ensure_model
from bench.servers import serve, split_kind
from labelserve_tools.loadgen import closed_loop, multipart_request, percentiles_ms

__all__ = ["PHASES", "timeline"]

SPANS_ENV = "REQUEST_TIMELINE_SPANS"
REQUEST_SPAN = "POST /predict"
# the request's named spans in the order they happen; the gaps before each are named after what runs there
PHASES = ("body read", "admission wait", "decode", "queue wait", "engine batch", "encode")
_GAPS = {"body read": "arrival -> body read", "admission wait": "between body and admission",
         "decode": "routing, multipart, lease, hand-off to a decode thread",
         "queue wait": "back from the decode thread, submit",
         "engine batch": "collector: queue -> batch",
         "encode": "back from the engine thread, postprocess, store commit",
         "end": "response: metrics, access log, write"}


def _serve_traced() -> None:
    """The service, every request traced, spans appended to the file `REQUEST_TIMELINE_SPANS` names."""
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    from service import tracing
    from service.server import serve as serve_service
    from service.settings import get_settings

    out = open(os.environ[SPANS_ENV], "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (open while serving)

    class FileExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            for span in spans:
                out.write(json.dumps({"name": span.name, "trace": span.context.trace_id,
                                      "links": [link.context.trace_id for link in span.links],
                                      "start": span.start_time, "end": span.end_time}) + "\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
    tracing.enable(provider)
    sys.exit(serve_service(get_settings()))


def timeline(spans: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per phase and gap, every request's microseconds: requests are their `POST /predict` spans, the engine batch
    is the span linked to the request's trace."""
    by_trace: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        for trace in [span["trace"], *span["links"]] if span["name"] == "engine batch" else [span["trace"]]:
            by_trace[trace].append(span)
    phases: dict[str, list[float]] = defaultdict(list)
    for members in by_trace.values():
        request = next((span for span in members if span["name"] == REQUEST_SPAN), None)
        named = sorted((span for span in members if span["name"] in PHASES), key=lambda span: span["start"])
        if request is None or [span["name"] for span in named] != list(PHASES):
            continue  # not one complete single-image request
        previous_end = request["start"]
        for span in named:
            phases[_GAPS[span["name"]]].append((span["start"] - previous_end) / 1000)
            phases[span["name"]].append((span["end"] - span["start"]) / 1000)
            previous_end = span["end"]
        phases[_GAPS["end"]].append((request["end"] - previous_end) / 1000)
        phases["server (the request's span)"].append((request["end"] - request["start"]) / 1000)
    return phases


def measure(model: str, variant: str, repository: Path, seconds: float) -> dict[str, Any]:
    """One server variant on one model: the client's latency and the median of every phase."""
    settings = split_kind(variant)[1]
    payloads = photo_payloads(16)
    with tempfile.TemporaryDirectory(prefix="request-timeline-") as tmp:
        spans_path = Path(tmp) / "spans.jsonl"
        os.environ[SPANS_ENV] = str(spans_path)
        with serve("labelserve-traced", repository, model, **settings) as server:
            requests = [multipart_request(server.url, "/predict", f"image{i}.jpg", p, {"model": model})
                        for i, p in enumerate(payloads)]
            asyncio.run(closed_loop(server.url, requests, 1, 2.0, [], Counter()))  # warm-up
            spans_path.write_text("")
            latencies: list[float] = []
            statuses: Counter = Counter()
            asyncio.run(closed_loop(server.url, requests, 1, seconds, latencies, statuses))
            spans = [json.loads(line) for line in spans_path.read_text().splitlines() if line.strip()]
    phases = timeline(spans)
    client = percentiles_ms(latencies)
    medians = {phase: statistics.median(values) for phase, values in phases.items()}
    medians["client and connection"] = 1000 * client["p50_ms"] - medians["server (the request's span)"]
    return {"model": model, "variant": variant, "requests": len(latencies), "errors": sum(statuses.values())
            - statuses.get(200, 0), "client_p50_ms": client["p50_ms"], "median_us": medians}


def main() -> None:
    if sys.argv[1:] == ["serve"]:
        _serve_traced()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[LIGHT_MODEL, "demo", "resnet18-q2l"])
    parser.add_argument("--variants", nargs="+", default=["labelserve", "labelserve:lone_session=false"],
                        help="labelserve with settings after a colon")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/request-timeline-<time>.json)")
    args = parser.parse_args()
    results = []
    for model in args.models:
        ensure_model(args.repository, model)
        for variant in args.variants:
            print(f"{model} {variant}: one client for {args.seconds:g} s ...", flush=True)
            results.append(measure(model, variant, args.repository, args.seconds))
    order = ["client and connection", *[step for phase in PHASES for step in (_GAPS[phase], phase)], _GAPS["end"],
             "server (the request's span)"]
    table = [{"phase": phase, **{f"{r['model']} {r['variant']}": r["median_us"].get(phase, float("nan"))
                                 for r in results}} for phase in order]
    table.append({"phase": "client p50 (us)", **{f"{r['model']} {r['variant']}": 1000 * r["client_p50_ms"]
                                                   for r in results}})
    print(format_table(table, list(table[0])))
    path = write_results("request-timeline", {"benchmark": "request-timeline", "seconds": args.seconds,
                                              "order": order, "results": results}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
