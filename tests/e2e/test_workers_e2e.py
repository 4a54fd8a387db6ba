"""`LABELSERVE_WORKERS=2` for real: two worker processes of one server both answer (told apart by the process id in
their log lines), a scrape through the shared port counts every worker's requests, SIGTERM drains uploads in flight
in both workers with exit code 0, a killed worker is replaced and its counts stay, a worker that cannot start stops
the server."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from e2e_support import wait_for
from prometheus_client.parser import text_string_to_metric_families

from labelserve_tools.local_server import ServerProcess, start_server
from service.observability import Metrics
from service.repository import ModelRepository
from service.settings import Settings
from service.workers import available_cpus, settings_per_worker
from tests.http_testing import slow_post

pytestmark = pytest.mark.e2e

Images = list[tuple[str, bytes]]
Reference = Callable[[bytes], dict[str, float]]
TOLERANCE = 1e-5
PREDICT_OK = {"method": "POST", "route": "/predict", "status": "200"}


@pytest.fixture(scope="module")
def workers(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`python -m service` with two workers on the tiny model."""
    with start_server(model_repository, tmp_path_factory.mktemp("workers"), workers="2", repository_poll_s="0",
                      max_batch_size="8") as server:
        yield server
        server.stop()


def _post(url: str, image: tuple[str, bytes], request_id: str | None = None) -> httpx.Response:
    name, data = image
    headers = {"X-Request-ID": request_id} if request_id else None
    return httpx.post(f"{url}/predict", files=[("files", (name, data, "image/jpeg"))], headers=headers, timeout=60)


def _pids_that_answered(server: ServerProcess, request_ids: set[str]) -> dict[str, int]:
    """request id -> pid of the worker that wrote its access line."""
    return {str(r["request_id"]): int(str(r["pid"])) for r in server.log_records()
            if r.get("logger") == "service.observability" and r.get("request_id") in request_ids}


def _parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state, past the "(name)"


def _assert_matches_reference(response: httpx.Response, data: bytes, reference: Reference) -> None:
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    expected = reference(data)
    got = {label["name"]: label["probability"] for label in result["labels"]}
    assert max(abs(got[name] - expected[name]) for name in expected) <= TOLERANCE


def test_both_workers_answer_with_the_models_probabilities(workers: ServerProcess, val_jpegs: Images,
                                                          reference: Reference) -> None:
    pids = workers.worker_pids()
    assert len(pids) == 2 and len(set(pids.values())) == 2
    assert all(_parent_pid(pid) == workers.process.pid for pid in pids.values()), "workers are the server's children"
    answered: dict[str, int] = {}
    for attempt in range(60):  # a new connection each time; the kernel hands it to whichever worker accepts first
        request_id = uuid.uuid4().hex
        image = val_jpegs[attempt % len(val_jpegs)]
        _assert_matches_reference(_post(workers.url, image, request_id), image[1], reference)
        wait_for(lambda rid=request_id: rid in _pids_that_answered(workers, {rid}), timeout_s=30)
        answered.update(_pids_that_answered(workers, {request_id}))
        if set(answered.values()) == set(pids.values()):
            break
    assert set(answered.values()) == set(pids.values()), f"only {set(answered.values())} answered"
    cpus = available_cpus()
    threads = max(1, cpus // 2)
    assert (f"with 2 workers ({cpus} CPUs; {threads} onnxruntime intra-op thread{'s' if threads > 1 else ''} each "
            f"({cpus} CPUs / 2 workers))") in workers.log()


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text  # a new connection: any worker may answer
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, sample_labels), v in samples.items()
               if n == name and all((k, v2) in sample_labels for k, v2 in labels.items()))


def test_a_scrape_through_the_shared_port_counts_every_workers_requests(workers: ServerProcess,
                                                                          val_jpegs: Images) -> None:
    before = _scrape(workers.url)
    sent = 16
    request_ids = [uuid.uuid4().hex for _ in range(sent)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda i: _post(workers.url, val_jpegs[i % len(val_jpegs)], request_ids[i]),
                                  range(sent)))
    assert all(r.status_code == 200 for r in responses)
    wait_for(lambda: len(_pids_that_answered(workers, set(request_ids))) == sent, timeout_s=30)
    worker_pids = set(workers.worker_pids().values())
    for _ in range(8):  # every scrape, whichever worker answers it, sees the whole server
        after = _scrape(workers.url)
        assert _value(after, "labelserve_requests_total", **PREDICT_OK) \
            - _value(before, "labelserve_requests_total", **PREDICT_OK) == sent
        for name in ("labelserve_images_total", "labelserve_batch_size_sum"):
            assert _value(after, name, model="tiny") - _value(before, name, model="tiny") == sent, name
        assert _value(after, "labelserve_workers") == 2
        assert _value(after, "labelserve_model_info", model="tiny", version="1") == 1  # not one per worker
        in_flight = {labels: v for (name, labels), v in after.items() if name == "labelserve_requests_in_flight"}
        assert {dict(labels)["pid"] for labels in in_flight} <= {str(pid) for pid in worker_pids}
        assert sum(v for labels, v in in_flight.items() if ("method", "GET") in labels) == 1  # this scrape


def _posts_in_flight_per_worker(server: ServerProcess) -> dict[str, float]:
    return {dict(labels)["pid"]: value for (name, labels), value in _scrape(server.url).items()
            if name == "labelserve_requests_in_flight" and ("method", "POST") in labels}


def test_sigterm_answers_the_uploads_in_flight_in_every_worker(model_repository: Path, tmp_path: Path,
                                                               val_jpegs: Images, reference: Reference) -> None:
    with start_server(model_repository, tmp_path, workers="2", repository_poll_s="0") as server, \
            ThreadPoolExecutor(max_workers=12) as pool:
        pids = {str(pid) for pid in server.worker_pids().values()}
        posts: list[tuple[Future[httpx.Response], bytes]] = []
        while len(posts) < 12:  # until both workers hold an upload (the kernel picks the worker per connection)
            image = val_jpegs[len(posts) % len(val_jpegs)]
            posts.append((pool.submit(slow_post, server.url, image, 4.0), image[1]))
            started = len(posts)
            wait_for(lambda n=started: sum(_posts_in_flight_per_worker(server).values()) == n, timeout_s=30)
            busy = {pid for pid, count in _posts_in_flight_per_worker(server).items() if count > 0}
            if busy == pids:
                break
        assert busy == pids, f"uploads reached only {busy} of {pids}"
        server.stop()  # SIGTERM to the server while every upload is still arriving; stop() checks exit code 0
        for future, data in posts:
            _assert_matches_reference(future.result(), data, reference)
    assert server.log().count("Application shutdown complete") == 2
    assert "all 2 workers drained and stopped" in server.log()


def test_a_killed_worker_is_replaced_and_its_counts_stay(model_repository: Path, tmp_path: Path,
                                                         val_jpegs: Images) -> None:
    with start_server(model_repository, tmp_path, workers="2", repository_poll_s="0") as server:
        for image in val_jpegs[:8]:
            assert _post(server.url, image).status_code == 200
        answered = server.metric("labelserve_requests_total", **PREDICT_OK)
        assert answered == 8
        victim = server.worker_pids()[0]
        assert _parent_pid(victim) == server.process.pid  # a process this test started, through the server
        os.kill(victim, signal.SIGKILL)
        for image in val_jpegs[:4]:  # the other worker keeps answering meanwhile
            assert _post(server.url, image).status_code == 200
        wait_for(lambda: server.worker_pids()[0] != victim, timeout_s=30)  # the replacement is ready
        assert f"worker 0 (pid {victim}) exited with code -9 while serving; starting a replacement" in server.log()
        assert server.metric("labelserve_worker_restarts_total") == 1
        assert server.metric("labelserve_workers") == 2
        assert server.metric("labelserve_requests_total", **PREDICT_OK) == answered + 4  # the dead worker's stay
        scrape = _scrape(server.url)
        assert not any(dict(labels).get("pid") == str(victim) for _, labels in scrape), "its live gauges went"
        for image in val_jpegs[:4]:
            assert _post(server.url, image).status_code == 200
        server.stop()


def test_a_worker_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="server exited with 1 during startup") as failure:
        start_server(tmp_path / "no-such-repository", tmp_path, startup_timeout_s=60, workers="2")
    assert "before it was ready; stopping the server" in str(failure.value)


def test_the_workers_benchmark_runs_against_real_workers(model_repository: Path, val_jpegs: Images) -> None:
    """bench.workers is what a session with a lent 16-core machine runs (bench/gpu_session.sh): it must work first."""
    from bench.workers import run_workers

    (row,) = run_workers(model_repository, "tiny", worker_counts=[2], concurrencies=[4], seconds=1.0,
                         payloads=[data for _, data in val_jpegs[:4]], processes=2, max_batch=8)
    assert row["workers"] == 2 and row["errors"] == {}
    assert row["ok"] > 0 and row["images_per_s"] > 0 and row["speedup"] == 1.0
    assert row["mean_batch_size"] >= 1.0
    assert row["server_cores"] > 0  # the workers' CPU time is counted, not only the idle supervisor's
    assert row["intra_op_threads_per_worker"] == str(max(1, available_cpus() // 2))


@pytest.mark.parametrize(("config", "threads"), [({"intra_op_threads": 0}, 2), ({"intra_op_threads": 3}, 3), ({}, 2)])
def test_a_models_thread_count_is_per_worker_as_the_start_up_line_says(model_repository: Path, tmp_path: Path,
                                                                       config: dict[str, int], threads: int) -> None:
    """What one worker's onnxruntime session really runs with, on a 4-CPU split of 2 workers: a config.json's 0 (what
    tune used to write) follows the split instead of onnxruntime's one thread per core (issue 19)."""
    import asyncio
    import json
    import shutil

    repository = tmp_path / "repository"
    shutil.copytree(model_repository / "tiny", repository / "tiny")
    (repository / "tiny" / "config.json").write_text(json.dumps(config))
    settings = settings_per_worker(Settings(workers=2, model_repository=repository), cpus=4)

    async def session_threads() -> int:
        loaded = ModelRepository(settings, Metrics())
        await loaded.load_all()
        try:
            return loaded.get("tiny").engine.session_options.intra_op_num_threads
        finally:
            await loaded.stop(5.0)

    assert asyncio.run(session_threads()) == threads
