"""What the per-worker request counters cost a request: an in-process A/B of ``Connection``.

One connection over a socketpair serves hello-world keep-alive requests, with
the counters off (``ServerContext.stats`` None, as without --metrics-bind) and
on (queued per request, added up once per round as the worker does once a
second), in interleaved rounds so the machine's drift hits both alike. Times
are the thread's CPU time, so another process taking the CPU (a shared
machine) does not count; printed are the median per request of each and the
difference to "off".

    python benchmarks/metrics_overhead.py [--requests 5000] [--rounds 40]

A/B of the running code only: to compare two versions, run it in each.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time

from sharedsock.connection import READY, Connection, ServerContext
from sharedsock.http.parser import Limits
from sharedsock.proxy import TrustedProxies
from sharedsock.requeststats import RequestStats
from sharedsock.wsgi import base_environ

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
BODY = b"Hello, world!\n"


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]


def one_round(requests: int, counting: bool) -> float:
    """CPU seconds per request."""
    ctx = ServerContext(hello, limits=Limits(), keepalive=5.0, header_timeout=10.0, body_timeout=10.0,
                        min_body_rate=1024, root_path="", server_header="sharedsock",
                        trusted=TrustedProxies(()), access_log=None, multithread=False,
                        multiprocess=True)
    ctx.stats = RequestStats() if counting else None
    server, client = socket.socketpair()
    conn = Connection(server, None, base_environ("localhost", "80", "", False, True), ctx, True)
    send, recv = client.send, client.recv
    start = time.thread_time()
    for _ in range(requests):
        send(REQUEST)
        while conn.on_readable() != READY:
            pass
        conn.serve()
        recv(65536)
    if ctx.stats is not None:
        ctx.stats.add_up()  # the worker's once-a-second share of the cost, for these requests
    elapsed = time.thread_time() - start
    conn.close()
    client.close()
    return elapsed / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    variants = {"off": False, "on": True}
    one_round(2000, True)  # warm up
    times: dict[str, list[float]] = {name: [] for name in variants}
    for n in range(args.rounds):
        names = list(variants) if n % 2 else list(reversed(variants))
        for name in names:
            times[name].append(one_round(args.requests, variants[name]))
    base = statistics.median(times["off"])
    # Each "on" round against the "off" round run next to it: what drifts between rounds
    # (another process's cache use, the clock) cancels out of the difference.
    diffs = sorted(on - off for on, off in zip(times["on"], times["off"]))
    quarter = len(diffs) // 4
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:4} {median * 1e6:6.2f} us/request CPU (median of {args.rounds} rounds)")
    diff = statistics.median(diffs)
    print(f"on - off: {diff * 1e9:+5.0f} ns/request, {diff / base * 100:+.2f}% (median of the paired "
          f"rounds; middle half {diffs[quarter] * 1e9:+.0f} to {diffs[-quarter - 1] * 1e9:+.0f} ns)")

if __name__ == "__main__":
    main()
