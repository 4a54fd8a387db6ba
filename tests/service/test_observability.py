"""Metrics registries are per app; logs are JSON lines carrying the request id."""

from __future__ import annotations

import json
import logging

from service.observability import JsonFormatter, Metrics


def test_two_metrics_objects_do_not_share_series() -> None:
    first, second = Metrics(), Metrics()  # would raise "Duplicated timeseries" on a shared registry
    first.observer("m", 1).observe_batch(4, 0.01)
    assert first.registry.get_sample_value("labelserve_batch_size_sum", {"model": "m", "version": "1"}) == 4
    assert second.registry.get_sample_value("labelserve_batch_size_sum", {"model": "m", "version": "1"}) is None


def test_json_formatter_emits_one_object_with_extras_and_request_id() -> None:
    record = logging.LogRecord("service.test", logging.WARNING, __file__, 1, "queue %s is %d deep", ("m", 3), None)
    record.request_id = "req-1"
    record.status = 503
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "queue m is 3 deep"
    assert entry["level"] == "WARNING" and entry["logger"] == "service.test"
    assert entry["request_id"] == "req-1"
    assert entry["status"] == 503
    assert "ts" in entry


def test_json_formatter_includes_the_exception() -> None:
    try:
        raise ValueError("bad")
    except ValueError as exc:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), (type(exc), exc, exc.__traceback__))
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: bad" in entry["exception"]
