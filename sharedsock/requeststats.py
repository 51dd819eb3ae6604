"""Per-worker request counters: noted on the request path, added up and reported in batches.

A request only appends one tuple to a queue (``RequestStats.record``, a
deque's own append: no Python frame, no lock, safe from pool threads). About
once a second the worker's loop adds the queue up, with C loops only (``map``,
``filter``, ``Counter``, ``sum``), and sends the cumulative totals to the
master over the control channel (``channel.STATS``), so a lost line costs
nothing; the master turns them into ``/metrics`` (see ``metrics``). Labels are
bounded: a status class and one of the common methods, anything else ``other``.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Any

# Upper bounds (seconds) of the request duration histogram; a last bucket holds the rest.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"))
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
OTHER = "other"  # a method not in METHODS; a status class when no response was sent
_CLASS_OF = {c[0]: c for c in STATUS_CLASSES}
_popleft = deque.popleft


class RequestStats:
    """What one worker's requests added up to since it started.

    ``record((status, method, duration, response bytes, request bytes))`` runs
    once per request, from any thread; ``add_up`` and ``report`` only from the
    worker's loop.
    """

    __slots__ = ("record", "_queue", "requests", "buckets", "duration_sum", "response_bytes",
                 "request_bytes")

    def __init__(self, threaded: bool = False) -> None:
        """``threaded`` (pool threads record while the loop adds up) needs nothing more: the
        batch is taken with ``popleft``, which never loses a racing append."""
        self._queue: deque[tuple[str, str, float, int, int]] = deque()
        self.record = self._queue.append
        self.requests: dict[tuple[str, str], int] = {}  # (status class, method) -> count
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)  # per bucket, not cumulative
        self.duration_sum = 0.0
        self.response_bytes = 0
        self.request_bytes = 0

    def add_up(self) -> None:
        """Fold the queued requests into the totals.

        Written for the common batch: one method, a few statuses, most durations in the first
        buckets; no Python frame per request."""
        queue = self._queue
        if not queue:
            return
        # One pass over the queued tuples (they are cold in the cache by now), then C loops over
        # the columns. popleft, not clear(): a pool thread may append meanwhile.
        statuses, methods, durations, sent, received = zip(*map(_popleft, repeat(queue, len(queue))))
        requests = self.requests
        counted: Iterable[tuple[tuple[str, str], int]]
        if methods.count(methods[0]) == len(methods):  # identity compares: the parser interns methods
            method = methods[0]
            counted = [((status, method), count) for status, count in Counter(statuses).items()]
        else:
            counted = Counter(zip(statuses, methods)).items()
        for (status, method), count in counted:
            key = (_CLASS_OF.get(status[:1], OTHER), method if method in METHODS else OTHER)
            requests[key] = requests.get(key, 0) + count
        buckets = self.buckets
        rest: Sequence[float] = durations
        for i, bound in enumerate(DURATION_BUCKETS):  # each pass keeps what is above the bound
            if not rest:
                break
            above = list(filter(bound.__lt__, rest))
            buckets[i] += len(rest) - len(above)
            rest = above
        buckets[-1] += len(rest)
        self.duration_sum += sum(durations)
        self.response_bytes += sum(sent)
        self.request_bytes += sum(received)

    def report(self, **gauges: int) -> dict[str, Any]:
        """The payload of a STATS line: the cumulative counts so far plus the worker's
        ``gauges`` (accepted, in_flight, open, idle)."""
        self.add_up()
        return {"requests": [[status, method, count] for (status, method), count in self.requests.items()],
                "buckets": list(self.buckets), "duration_sum": self.duration_sum,
                "response_bytes": self.response_bytes, "request_bytes": self.request_bytes, **gauges}
