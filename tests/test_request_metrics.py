"""Per-worker request metrics: counted in the workers, reported to the master in batches, exact in
/metrics, and kept in the totals when the workers that counted them have exited."""

from __future__ import annotations

import signal
from collections import Counter

import pytest
from test_health_metrics import scrape, status_url

from conftest import http_get, parse_response, raw_exchange, wait_for

BODY = b"x" * 1000


def _send_batch(server, gets: int, missing: int, posts: int, errors: int) -> dict:
    """The requests, each on its own connection; what the server must have counted for them."""
    expect: Counter = Counter()
    per_pid: Counter = Counter()
    sent = 0
    for path, times, status_class in (("/", gets, "2xx"), ("/missing", missing, "4xx")):
        for _ in range(times):
            status, headers, body = http_get(server, path)
            assert status == (200 if status_class == "2xx" else 404)
            expect[(status_class, "GET")] += 1
            per_pid[int(headers["x-pid"])] += 1
            sent += len(body)
    for _ in range(posts):
        request = (b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY
        status, headers, body = parse_response(raw_exchange(server, request))
        assert status == 200 and body == BODY
        expect[("2xx", "POST")] += 1
        per_pid[int(headers["x-pid"])] += 1
        sent += len(body)
    for _ in range(errors):
        assert http_get(server, "/error")[0] == 500  # our error page: not the app's bytes
        expect[("5xx", "GET")] += 1
    return {"requests": expect, "per_pid": per_pid, "response_bytes": sent,
            "request_bytes": posts * len(BODY)}


def _totals(samples: dict) -> dict:
    requests = Counter({(dict(labels)["status"], dict(labels)["method"]): value
                        for (name, labels), value in samples.items() if name == "sharedsock_server_requests_total"})
    return {"requests": requests,
            "count": samples[("sharedsock_server_request_duration_seconds_count", ())],
            "inf": samples[("sharedsock_server_request_duration_seconds_bucket", (("le", "+Inf"),))],
            "accepted": samples[("sharedsock_server_connections_accepted_total", ())],
            "response_bytes": samples[("sharedsock_server_response_bytes_total", ())],
            "request_bytes": samples[("sharedsock_server_request_bytes_total", ())]}


def _per_worker(samples: dict, name: str) -> Counter:
    """{pid: value summed over the other labels} of a per-worker family."""
    out: Counter = Counter()
    for (sample, labels), value in samples.items():
        if sample == name:
            out[int(dict(labels)["pid"])] += value
    return out


def _matches(url: str, expect: dict, connections: int):
    samples = scrape(url)
    totals = _totals(samples)
    want = {"requests": expect["requests"], "count": connections, "inf": connections,
            "accepted": connections, "response_bytes": expect["response_bytes"],
            "request_bytes": expect["request_bytes"]}
    return samples if totals == want else None


@pytest.mark.parametrize(("method", "threads"), [("fork", 1), ("spawn", 4)])
def test_request_metrics_are_exact_per_worker_and_survive_a_reload(start_server, method, threads):
    server = start_server(["--bind", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0", "--workers", "2",
                           "--start-method", method, "--threads", str(threads), "metrics_app:app"],
                          workers=2)
    url = status_url(server)
    first = _send_batch(server, gets=7, missing=3, posts=2, errors=1)
    samples = wait_for(lambda: _matches(url, first, 13), message="the 13 requests counted in /metrics")
    # Per worker: the requests each pid answered (the 500 page names no pid), and the sums.
    answered = _per_worker({k: v for k, v in samples.items() if dict(k[1]).get("status") != "5xx"},
                           "sharedsock_requests_total")
    assert answered == first["per_pid"]
    # The names: per worker on sharedsock_*, labelled worker (index) and pid.
    for family in ("sharedsock_requests_total", "sharedsock_request_duration_seconds_count",
                   "sharedsock_requests_in_flight", "sharedsock_connections_accepted_total"):
        keys = {tuple(sorted(dict(labels))) for name, labels in samples if name == family}
        assert keys == {("method", "pid", "status", "worker") if "requests_total" in family
                        else ("pid", "worker")}, family
    assert {dict(labels)["worker"] for name, labels in samples
            if name == "sharedsock_connections_accepted_total"} == {"0", "1"}
    for family, total in (("sharedsock_requests_total", 13),
                          ("sharedsock_request_duration_seconds_count", 13),
                          ("sharedsock_connections_accepted_total", 13),
                          ("sharedsock_request_bytes_total", 2000),
                          ("sharedsock_response_bytes_total", first["response_bytes"])):
        assert sum(_per_worker(samples, family).values()) == total, family
    assert set(_per_worker(samples, "sharedsock_connections_accepted_total")) == \
        set(server.booted_pids())
    assert samples[("sharedsock_server_requests_in_flight", ())] == 0
    # Requests answered just before a reload: the old workers' last reports, sent as they exit,
    # carry them into the totals.
    second = _send_batch(server, gets=5, missing=0, posts=0, errors=0)
    server.send(signal.SIGHUP)
    server.wait_log(r"Booted worker \d+ \(generation 2\)", count=2)
    server.wait_log(r"worker \d+ \(generation 1\) exited", count=2)
    expect = {"requests": first["requests"] + second["requests"],
              "response_bytes": first["response_bytes"] + second["response_bytes"],
              "request_bytes": 2000}
    samples = wait_for(lambda: _matches(url, expect, 18), message="the 18 requests still counted")
    old = set(server.booted_pids()[:2])
    assert not old & set(_per_worker(samples, "sharedsock_connections_accepted_total"))
    assert server.stop() == 0


def test_connection_gauges_and_bounded_labels(start_server):
    server = start_server(["--bind", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0", "--workers", "1",
                           "metrics_app:app"])
    url = status_url(server)
    kept = server.connect()
    kept.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert kept.recv(65536).startswith(b"HTTP/1.1 200")
    wait_for(lambda: scrape(url).get(("sharedsock_server_connections_idle", ())) == 1,
             message="one idle kept-alive connection")
    samples = scrape(url)
    assert samples[("sharedsock_server_connections_open", ())] == 1
    assert sum(_per_worker(samples, "sharedsock_connections_idle").values()) == 1
    kept.close()
    wait_for(lambda: scrape(url).get(("sharedsock_server_connections_open", ())) == 0,
             message="no connection open")
    # A method outside the common ones is counted as "other": labels stay a fixed set.
    status, _, _ = parse_response(raw_exchange(server, b"PROPFIND / HTTP/1.1\r\nHost: t\r\n"
                                                       b"Connection: close\r\n\r\n"))
    assert status == 200
    wait_for(lambda: scrape(url).get(("sharedsock_server_requests_total", (("method", "other"), ("status", "2xx"))))
             == 1, message="the PROPFIND request counted as method other")
    assert server.stop() == 0



def test_adding_up_a_batch_counts_labels_and_buckets_exactly():
    """The batch paths (one method or several; durations on, below and above the bounds), and
    pool threads appending while the loop adds up: nothing lost, nothing counted twice."""
    import threading

    from sharedsock.requeststats import DURATION_BUCKETS, RequestStats

    stats = RequestStats(threaded=True)
    for duration in (0.0, *DURATION_BUCKETS, 11.0):
        stats.record(("200 OK", "GET", duration, 10, 1))
    stats.add_up()
    assert stats.requests == {("2xx", "GET"): 13}
    assert stats.buckets == [2] + [1] * (len(DURATION_BUCKETS) - 1) + [1]  # le: a bound is in its bucket
    stats.record(("404 Not Found", "PROPFIND", 0.001, 0, 0))
    stats.record(("000", "POST", 0.001, 0, 5))
    stats.add_up()
    assert stats.requests == {("2xx", "GET"): 13, ("4xx", "other"): 1, ("other", "POST"): 1}
    assert (stats.response_bytes, stats.request_bytes) == (130, 18)
    fresh = RequestStats()
    for duration in (0.001, 0.005, 0.002):  # one method, one status, all in the first bucket
        fresh.record(("200 OK", "GET", duration, 1, 0))
    fresh.add_up()
    for status in ("200 OK", "301 Moved", "200 OK"):  # one method, several statuses
        fresh.record((status, "HEAD", 0.001, 0, 0))
    fresh.add_up()
    assert fresh.requests == {("2xx", "GET"): 3, ("2xx", "HEAD"): 2, ("3xx", "HEAD"): 1}
    assert fresh.buckets == [6] + [0] * len(DURATION_BUCKETS)

    def hammer() -> None:
        for _ in range(20000):
            stats.record(("500 Internal Server Error", "GET", 0.001, 1, 0))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        stats.add_up()
    stats.add_up()
    assert stats.requests[("5xx", "GET")] == 80000 and stats.response_bytes == 130 + 80000
