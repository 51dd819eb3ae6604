"""The master answers for the whole server: /metrics, /livez, /readyz, even with every worker busy."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import DEADLINE, http_get, pid_of, wait_for

_METRICS = re.compile(r"Metrics and health at: (\S+)")


def status_url(server) -> str:
    return server.wait_log(_METRICS.pattern)[0].group(1)


def get(url: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url + path, timeout=DEADLINE) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    status, body = get(url, "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _args(*extra: str) -> list[str]:
    return ["--bind", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0", *extra, "testapp:app"]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_metrics_count_reloads_restarts_and_workers(start_server, method):
    server = start_server(_args("--workers", "2", "--start-method", method), workers=2)
    url = status_url(server)
    wait_for(lambda: scrape(url)[("sharedsock_workers", (("state", "ready"),))] == 2,
             message="2 ready workers in /metrics")
    first = scrape(url)
    assert first[("sharedsock_generation", ())] == 1
    assert first[("sharedsock_reloads_total", ())] == 0
    assert all(first[("sharedsock_worker_restarts_total", (("reason", r),))] == 0
               for r in ("crash", "timeout", "max_requests", "memory", "reload"))
    assert first[("sharedsock_listen_queue_limit", (("listener", server.url),))] == 2048
    memory = [v for (name, _), v in first.items() if name == "sharedsock_worker_memory_bytes"]
    assert len(memory) == 2 and all(v > 1 << 20 for v in memory)
    server.send(signal.SIGHUP)
    server.wait_log(r"Booted worker \d+ \(generation 2\)", count=2)
    wait_for(lambda: scrape(url)[("sharedsock_worker_restarts_total", (("reason", "reload"),))] == 2,
             message="both old workers counted as replaced by the reload")
    after = scrape(url)
    assert after[("sharedsock_reloads_total", ())] == 1
    assert after[("sharedsock_generation", ())] == 2
    victim = pid_of(http_get(server, "/")[2])
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: scrape(url)[("sharedsock_worker_restarts_total", (("reason", "crash"),))] == 1,
             message="the killed worker counted as a crash")
    assert server.stop() == 0


def test_health_answers_while_every_worker_is_busy(start_server):
    server = start_server(_args("--workers", "1", "--threads", "1"))
    url = status_url(server)
    busy = server.connect()
    busy.sendall(b"GET /slow?5 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    server.wait_log("slow request started")
    assert get(url, "/livez")[0] == 200
    status, body = get(url, "/readyz")
    assert status == 200 and body == b"ready: 1 of 1 workers ready\n"
    assert get(url, "/metrics")[0] == 200
    status, body = get(url, "/status.json")  # the live view, from the master too
    assert status == 200 and [w["state"] for w in json.loads(body)["workers"]] == ["ready"]
    status, body = get(url, "/")
    assert status == 200 and body.startswith(b"<!doctype html>")
    assert get(url, "/nope")[0] == 404
    busy.close()
    assert server.stop() == 0


def test_readyz_needs_ready_workers_and_stays_up_during_a_reload(start_server):
    server = start_server(_args("--workers", "2"), workers=2)
    url = status_url(server)
    wait_for(lambda: get(url, "/readyz")[0] == 200, message="/readyz 200")
    answers: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            answers.append(get(url, "/readyz")[0])

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    server.send(signal.SIGHUP)
    server.wait_log(r"Booted worker \d+ \(generation 2\)", count=2)
    server.wait_log(r"worker \d+ \(generation 1\) exited", count=2)
    stop.set()
    poller.join(DEADLINE)
    assert answers and set(answers) == {200}


def test_ready_workers_threshold(start_server):
    server = start_server(_args("--workers", "2", "--ready-workers", "3"), workers=2)
    url = status_url(server)
    assert get(url, "/readyz") == (503, b"not ready: 2 of 2 workers ready\n")
    server.send(signal.SIGTTIN)
    server.wait_ready(workers=3)
    wait_for(lambda: get(url, "/readyz")[0] == 200, message="/readyz 200 with 3 workers")


def test_shutdown_delay_turns_readyz_503_and_keeps_serving(start_server):
    server = start_server(_args("--workers", "1", "--shutdown-delay", "3"))
    url = status_url(server)
    wait_for(lambda: get(url, "/readyz")[0] == 200, message="/readyz 200")
    server.send(signal.SIGTERM)
    wait_for(lambda: get(url, "/readyz")[0] == 503, message="/readyz 503 after SIGTERM")
    assert http_get(server, "/")[0] == 200  # the workers still serve during the delay
    server.wait_log("--shutdown-delay is over: draining")
    assert server.wait_exit() == 0
    with pytest.raises(OSError):
        socket.create_connection(server.address, timeout=5).close()


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_worker_over_its_memory_limit_is_replaced_gracefully(start_server, method):
    server = start_server(["--bind", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0",
                           "--start-method", method, "--workers", "1",
                           "--max-worker-memory", "100", "grow_app:app"])
    url = status_url(server)
    first = pid_of(http_get(server, "/")[2])
    for _ in range(8):
        status, _, body = http_get(server, "/grow")
        assert status == 200
    server.wait_log(rf"worker {first} uses \d+\.\d MiB, over --max-worker-memory 100; replacing it")
    server.wait_ready(workers=2)
    wait_for(lambda: pid_of(http_get(server, "/")[2]) != first, message="the replacement to serve")
    wait_for(lambda: scrape(url)[("sharedsock_worker_restarts_total", (("reason", "memory"),))] == 1,
             message="the memory restart counted")
    assert server.stop() == 0


@pytest.mark.parametrize(("flag", "value"), [("--metrics-bind", "unix:"),
                                             ("--ready-workers", "-1"),
                                             ("--shutdown-delay", "soon"),
                                             ("--max-worker-memory", "lots")])
def test_bad_values_are_one_line_and_exit_2(start_server, flag, value):
    server = start_server(["--bind", "127.0.0.1:0", flag, value, "testapp:app"], wait=False)
    assert server.wait_exit() == 2
    assert len(server.log().strip().splitlines()) == 1, server.log()
