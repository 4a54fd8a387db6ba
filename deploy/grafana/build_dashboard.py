"""Writes dashboards/labelserve.json: the Grafana dashboard for labelserve, as code.

    python deploy/grafana/build_dashboard.py

Kept as a short generator rather than hand-edited JSON so every panel is one readable line of intent; a test
re-runs it to prove the committed JSON is current and that every metric its PromQL names exists in a real
`/metrics` scrape of the service.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards" / "labelserve.json"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
SEL = 'model=~"$model"'
# The routes that run the model; the `route` label is the full path template (`/v2/models/{name}/infer`, and
# `.../versions/{version}/infer`). deploy/prometheus/rules.yml alerts on the same regex.
INFERENCE_ROUTES = "/predict|/v2/models/.+/infer"


def _panel(title: str, targets: list[tuple[str, str]], x: int, y: int, unit: str = "short", kind: str = "timeseries",
           description: str = "", width: int = 12) -> dict[str, Any]:
    return {
        "type": kind, "title": title, "description": description, "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": width, "h": 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(targets)],
    }


def _row(title: str, y: int) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
            "panels": []}


def _quantiles(metric: str, by: str, selector: str = SEL) -> list[tuple[str, str]]:
    return [(f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}[$__rate_interval])))",
             f"p{round(q * 100)} {{{{{by}}}}}") for q in (0.5, 0.9, 0.99)]


def panels() -> list[dict[str, Any]]:
    """Every panel, top to bottom."""
    return [
        _panel("Throughput (images/s)", [(f"sum by (model, version) (rate(labelserve_images_total{{{SEL}}}"
                                          "[$__rate_interval]))", "{{model}} v{{version}}")], 0, 0, "ops",
               description="Images answered per second, per model version."),
        _panel("Requests by status", [('sum by (route, status) (rate(labelserve_requests_total[$__rate_interval]))',
                                       "{{route}} {{status}}")], 12, 0, "reqps"),
        _panel("Request latency p50 / p90 / p99", _quantiles("labelserve_request_duration_seconds", "route",
                                                              f'route=~"{INFERENCE_ROUTES}"'), 0, 8, "s",
               description="The inference routes: /predict and the Open Inference Protocol's infer."),
        _panel("Queue wait p50 / p90 / p99", _quantiles("labelserve_queue_wait_seconds", "model"), 12, 8, "s",
               description="Time an image waits for its batch (bounded by max_queue_delay_ms unless saturated)."),
        _panel("Batch size distribution", [(f"sum by (le) (increase(labelserve_batch_size_bucket{{{SEL}}}"
                                            "[$__rate_interval]))", "{{le}}")], 0, 16, "short", "heatmap"),
        _panel("Mean batch size", [(f"sum(rate(labelserve_batch_size_sum{{{SEL}}}[$__rate_interval])) / "
                                    f"sum(rate(labelserve_batch_size_count{{{SEL}}}[$__rate_interval]))", "mean")],
               12, 16),
        _panel("Inference time per batch, by engine",
               [("histogram_quantile(0.5, sum by (le, model, version) (rate(labelserve_inference_duration_seconds_"
                 f"bucket{{{SEL}}}[$__rate_interval]))) * on (model, version) group_left (engine, provider) "
                 "labelserve_model_info", "p50 {{model}} v{{version}} {{engine}}/{{provider}}"),
                ("histogram_quantile(0.99, sum by (le, model, version) (rate(labelserve_inference_duration_seconds_"
                 f"bucket{{{SEL}}}[$__rate_interval]))) * on (model, version) group_left (engine, provider) "
                 "labelserve_model_info", "p99 {{model}} v{{version}} {{engine}}/{{provider}}")], 0, 24, "s"),
        _panel("Queue depth and requests in flight", [(f"sum by (model) (labelserve_queue_depth{{{SEL}}})",
                                                       "queued {{model}}"),
                                                      ("sum(labelserve_requests_in_flight)", "in flight")], 12, 24),
        _panel("Rejections and errors", [("sum by (reason) (rate(labelserve_rejections_total[$__rate_interval]))",
                                          "rejected: {{reason}}"),
                                         ("sum(rate(labelserve_admission_rejections_total[$__rate_interval]))",
                                          "refused at the door: server_busy"),
                                         ("sum by (code) (rate(labelserve_errors_total[$__rate_interval]))",
                                          "error: {{code}}")], 0, 32, "reqps"),
        _panel("Model versions served", [("labelserve_model_info", "{{model}} v{{version}} {{engine}}/{{provider}}"),
                                         ("sum by (model, version, result) (increase(labelserve_model_loads_total"
                                          "[1h]))", "loads {{model}} v{{version}} {{result}}")], 12, 32, "short",
               "table"),
        _panel("Connections by phase", [("sum by (phase) (labelserve_connections)", "{{phase}}")], 0, 48,
               description="Open client connections: idle (kept alive), headers or body arriving, being answered, "
                           "closing after an error. Many in headers or body for long means slow clients; each phase "
                           "has a time limit (LABELSERVE_HEADER_TIMEOUT_S, LABELSERVE_BODY_MIN_RATE, ...)."),
        _panel("Connections closed by the server",
               [("sum by (reason) (rate(labelserve_connections_closed_total[$__rate_interval]))", "{{reason}}")],
               12, 48, "ops", description="idle: keep-alive expired; header_timeout, body_timeout, send_timeout: a "
                                          "client too slow; malformed, header_too_large, uri_too_long: a client that "
                                          "broke the rules; evicted: idle, closed at the connection cap for a new "
                                          "one; refused: at the cap with none idle (LABELSERVE_MAX_CONNECTIONS)."),
        _panel("File descriptors", [("max by (kind) (labelserve_file_descriptors)", "{{kind}}")], 0, 56,
               description="Descriptors the server holds, against the open-file limit; past it, the kernel resets "
                           "new connections before the server sees them."),
        _row("Labels: each label's answers against the model's own baseline, and what a shadow version changes", 64),
        _panel("Most drifted labels (PSI against the baseline)",
               [(f"topk(10, max by (model, version, label) (labelserve_label_drift{{{SEL}}}))",
                 "{{model}} v{{version}} {{label}}"),
                (f"max by (model, version) (labelserve_label_drift_threshold{{{SEL}}})", "flag at")], 0, 65,
               description="Population stability index of each label's answers in the monitor's window against the "
                           "validation split's (the bundle's baseline); past the threshold a label is flagged "
                           "(LabelserveLabelDrift). Absent until the window holds LABELSERVE_DRIFT_MIN_IMAGES "
                           "answers."),
        _panel("Served against baseline positive rate, most drifted labels",
               [("max by (model, version, label) (labelserve_label_positive_rate{" + SEL + "}) and on (model, version,"
                 " label) topk(5, max by (model, version, label) (labelserve_label_drift{" + SEL + "}))",
                 "served {{label}}"),
                ("max by (model, version, label) (labelserve_label_baseline_positive_rate{" + SEL + "}) and on "
                 "(model, version, label) topk(5, max by (model, version, label) (labelserve_label_drift{" + SEL +
                 "}))", "baseline {{label}}")], 12, 65, "percentunit",
               description="How often each of the five most drifted labels is given now, against how often it was "
                           "given on the validation split."),
        _panel("Labels flagged, labels per image",
               [(f"max by (model, version) (labelserve_labels_flagged{{{SEL}}})", "flagged {{model}} v{{version}}"),
                (f"max by (model, version, source) (labelserve_labels_per_image{{{SEL}}})",
                 "labels per image, {{source}} {{model}} v{{version}}")], 0, 73),
        _panel("Shadow: labels the candidate decides differently (flip rate)",
               [(f"topk(10, max by (model, version, candidate, label) (labelserve_shadow_flip_rate{{{SEL}}}))",
                 "v{{version}} -> v{{candidate}} {{label}}"),
                (f"max by (model, version, candidate) (labelserve_shadow_compared{{{SEL}}})",
                 "compared v{{version}} -> v{{candidate}}")], 12, 73, "percentunit",
               description="Share of the images answered by both versions on which the shadow candidate decides a "
                           "label differently, at each version's thresholds (config.json `shadow`)."),
        _row("Feedback: what users say the answers got right, per label", 81),
        _panel("Feedback received", [(f"sum by (model, version, kind) (rate(labelserve_feedback_total{{{SEL}}}"
                                      "[$__rate_interval]))", "{{model}} v{{version}} {{kind}}"),
                                     ("sum(rate(labelserve_store_failures_total[$__rate_interval]))",
                                      "answers not kept (store failing)")], 0, 82, "reqps",
               description="Feedback on answers (POST /v2/models/{name}/feedback): full label sets or partial "
                           "confirmations; and answers served without being kept for feedback."),
        _panel("Per-label precision and recall from feedback, labels with the most wrong answers",
               [(f"bottomk(5, min by (model, version, label) (labelserve_label_feedback_precision{{{SEL}}}))",
                 "precision {{label}}"),
                (f"bottomk(5, min by (model, version, label) (labelserve_label_feedback_recall{{{SEL}}}))",
                 "recall {{label}}")], 12, 82, "percentunit",
               description="Over the feedback window: how often a given label was confirmed (precision) and how "
                           "often a present label was given (recall). Low values say where `labelserve calibrate` "
                           "would move a threshold."),
        _panel("GPU memory", [("labelserve_gpu_memory_used_bytes", "used gpu{{gpu}}"),
                              ("labelserve_gpu_memory_total_bytes", "total gpu{{gpu}}")], 0, 40, "bytes",
               description="Only where NVML is available (the gpu image)."),
        _panel("GPU utilisation", [("labelserve_gpu_utilization_ratio", "gpu{{gpu}} {{name}}")], 12, 40,
               "percentunit"),
    ]


def dashboard() -> dict[str, Any]:
    """The whole dashboard document."""
    return {
        "uid": "labelserve", "title": "labelserve", "tags": ["labelserve"], "timezone": "browser",
        "schemaVersion": 39, "version": 1, "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{
            "name": "model", "type": "query", "datasource": DATASOURCE, "includeAll": True, "multi": True,
            "allValue": ".*", "current": {"text": "All", "value": "$__all"},
            "query": {"query": "label_values(labelserve_model_info, model)", "refId": "model"},
        }]},
        "panels": [dict(panel, id=index) for index, panel in enumerate(panels(), start=1)],
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n", encoding="utf-8")
