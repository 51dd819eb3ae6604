"""What the per-worker request counters cost a request: an in-process A/B of ``Connection``.

One connection over a socketpair serves hello-world keep-alive requests, with
the counters off (``ServerContext.stats`` None, as without --metrics-bind) and
on, alternating request by request, so whatever drifts on the machine (another
process's use of the cache, the clock speed) hits both alike; each request is
timed alone and the medians are compared, which a preempted request does not
move. Every ``--batch`` counted requests are added up, as a worker does once a
second (a busy hello-world worker serves about 10000 in that time), and that is
timed per request too. Printed: the median request off and on, the difference,
the adding up per request, and their sum against "off".

    python benchmarks/metrics_overhead.py [--requests 200000] [--batch 10000]

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


def measure(requests: int, batch: int) -> tuple[float, float, float]:
    """Median ns of a request off and on, and of adding up, per request added."""
    ctx = ServerContext(hello, limits=Limits(), keepalive=5.0, header_timeout=10.0, body_timeout=10.0,
                        min_body_rate=1024, root_path="", server_header="sharedsock",
                        trusted=TrustedProxies(()), access_log=None, multithread=False,
                        multiprocess=True)
    stats = RequestStats()
    server, client = socket.socketpair()
    conn = Connection(server, None, base_environ("localhost", "80", "", False, True), ctx, True)
    send, recv, clock = client.send, client.recv, time.perf_counter_ns
    off: list[int] = []
    on: list[int] = []
    adding: list[float] = []
    counted = 0
    for n in range(requests):
        ctx.stats = stats if n & 1 else None
        start = clock()
        send(REQUEST)
        while conn.on_readable() != READY:
            pass
        conn.serve()
        recv(65536)
        elapsed = clock() - start
        if n & 1:
            on.append(elapsed)
            counted += 1
            if counted == batch:
                start = clock()
                stats.add_up()
                adding.append((clock() - start) / counted)
                counted = 0
        else:
            off.append(elapsed)
    conn.close()
    client.close()
    return statistics.median(off), statistics.median(on), statistics.median(adding)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200000)
    parser.add_argument("--batch", type=int, default=10000)
    args = parser.parse_args()
    measure(2 * args.batch, args.batch)  # warm up
    off, on, adding = measure(max(args.requests, 2 * args.batch), args.batch)
    print(f"off {off:7.0f} ns/request (median)")
    print(f"on  {on:7.0f} ns/request (median), {on - off:+.0f} ns")
    print(f"adding up {adding:.0f} ns/request, in batches of {args.batch}")
    total = on - off + adding
    print(f"counting costs {total:.0f} ns/request, {total / off * 100:.2f}% of a hello-world request")


if __name__ == "__main__":
    main()
