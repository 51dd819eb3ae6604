"""Per-worker request counters, kept on the request path and reported to the master in batches.

Only counts live here: the request path pays a lock and a few additions per
request, and the worker sends cumulative totals over the control channel about
once a second (``channel.STATS``), so a lost line costs nothing. The master
turns the reports into ``/metrics`` (see ``metrics``). Labels are bounded: a
status class and one of the common methods, anything else counted as ``other``.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from typing import Any

# Upper bounds (seconds) of the request duration histogram; a last bucket holds the rest.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"))
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
OTHER = "other"  # a method not in METHODS; a status class when no response was sent
_CLASS_OF = {c[0]: c for c in STATUS_CLASSES}


class RequestStats:
    """What one worker's requests added up to since it started.

    Pool threads record concurrently, hence the lock (uncontended: the GIL
    already serialises them, the lock only keeps a read-modify-write whole).
    """

    __slots__ = ("lock", "requests", "buckets", "duration_sum", "response_bytes", "request_bytes")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}  # (status class, method) -> count
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)  # per bucket, not cumulative
        self.duration_sum = 0.0
        self.response_bytes = 0
        self.request_bytes = 0

    def record(self, status: str, method: str, duration: float, sent: int, received: int) -> None:
        key = (_CLASS_OF.get(status[:1], OTHER), method if method in METHODS else OTHER)
        with self.lock:
            requests = self.requests
            requests[key] = requests.get(key, 0) + 1
            self.buckets[bisect_left(DURATION_BUCKETS, duration)] += 1
            self.duration_sum += duration
            self.response_bytes += sent
            self.request_bytes += received

    def report(self, **gauges: int) -> dict[str, Any]:
        """The payload of a STATS line: these cumulative counts plus the worker's ``gauges``
        (accepted, in_flight, open, idle)."""
        with self.lock:
            requests = [[status, method, count] for (status, method), count in self.requests.items()]
            buckets = list(self.buckets)
            duration_sum = self.duration_sum
            sent, received = self.response_bytes, self.request_bytes
        return {"requests": requests, "buckets": buckets, "duration_sum": duration_sum,
                "response_bytes": sent, "request_bytes": received, **gauges}
