"""The front-end benchmarks run for real on the tiny model: bench.protocols drives every protocol with both clients
(the plain ones are httpx and tritonclient.grpc.aio, as users write them) and gets only 200s; bench.request_timeline
accounts for a lone request's whole time in the server with the service's own trace spans."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.images import photo_payloads
from bench.protocols import CLIENTS, PROTOCOLS, changes, measure, targets
from bench.request_timeline import PHASES
from bench.request_timeline import measure as measure_timeline

pytestmark = pytest.mark.e2e


def test_every_protocol_answers_both_clients_and_the_baseline_only_predict(model_repository: Path) -> None:
    rows = measure(["baseline", "labelserve"], model_repository, "tiny", photo_payloads(4), rounds=1, seconds=1.0,
                   concurrencies=(2,), clients=CLIENTS)
    cells = {(row["server"], row["protocol"], row["client"]) for row in rows}
    assert cells == {("baseline", "predict", client) for client in CLIENTS} | {
        ("labelserve", protocol, client) for protocol in PROTOCOLS for client in CLIENTS}
    for row in rows:
        assert row["errors"] == 0 and row["rounds"][0]["ok"] > 0, row
        assert row["server_cpu_ms_per_image"] > 0 and row["client_cpu_ms_per_image"] > 0, row
        if row["server"] == "labelserve":
            assert row["mean_batch_size"] >= 1, row  # read from the server's /metrics
    assert targets("tiny", rows, {}) == []  # the targets are the light model's
    assert changes(rows) == []  # no labelserve@<commit> beside it


def test_the_timeline_accounts_for_the_whole_request(model_repository: Path) -> None:
    result = measure_timeline("tiny", "labelserve", model_repository, seconds=1.5)
    assert result["errors"] == 0 and result["requests"] > 10
    medians = result["median_us"]
    assert all(medians[phase] >= 0 for phase in PHASES)
    assert medians["decode"] > 0 and medians["engine batch"] > 0
    assert 0 < medians["server (the request's span)"] < 1000 * result["client_p50_ms"]
