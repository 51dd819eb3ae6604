"""Per-worker request counters: noted on the request path, added up and reported in batches.

A request only appends one tuple to a queue (``RequestStats.record``, a
deque's own append: no Python frame, no lock, safe from pool threads). About
once a second the worker's loop adds the queue up, with the C loops of
``Counter``, ``sorted`` and ``sum``, and sends the cumulative totals to the
master over the control channel (``channel.STATS``), so a lost line costs
nothing; the master turns them into ``/metrics`` (see ``metrics``). Labels are
bounded: a status class and one of the common methods, anything else ``other``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, deque
from typing import Any

# Upper bounds (seconds) of the request duration histogram; a last bucket holds the rest.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"))
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
OTHER = "other"  # a method not in METHODS; a status class when no response was sent
SHED_REASONS = ("queue", "wait")  # answered 503 by load shedding: queue full, or waited too long
_CLASS_OF = {c[0]: c for c in STATUS_CLASSES}


class RequestStats:
    """What one worker's requests added up to since it started.

    ``record((status, method, duration, response bytes, request bytes))`` runs
    once per request, from any thread; ``add_up`` and ``report`` only from the
    worker's loop.
    """

    __slots__ = ("record", "_queue", "_threaded", "requests", "buckets", "duration_sum", "response_bytes",
                 "request_bytes", "note_shed", "_shed_queue", "shed")

    def __init__(self, threaded: bool = False) -> None:
        """``threaded``: pool threads record, while the loop adds up."""
        self._queue: deque[tuple[str, str, float, int, int]] = deque()
        self._threaded = threaded
        self.record = self._queue.append
        self.requests: dict[tuple[str, str], int] = {}  # (status class, method) -> count
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)  # per bucket, not cumulative
        self.duration_sum = 0.0
        self.response_bytes = 0
        self.request_bytes = 0
        # Requests shed (sharedsock.shedding), by reason: not in ``requests``, the app never saw them.
        self._shed_queue: deque[str] = deque()
        self.note_shed = self._shed_queue.append
        self.shed = dict.fromkeys(SHED_REASONS, 0)

    def add_up(self) -> None:
        """Fold the queued requests into the totals."""
        shed_queue, shed = self._shed_queue, self.shed
        for _ in range(len(shed_queue)):  # appends may race, from pool threads and the loop
            shed[shed_queue.popleft()] += 1
        queue = self._queue
        if self._threaded:
            popleft = queue.popleft
            batch = [popleft() for _ in range(len(queue))]  # appends may race: never clear()
        else:
            batch = list(queue)
            queue.clear()
        if not batch:
            return
        statuses, methods, durations, sent, received = zip(*batch)
        requests = self.requests
        for (status, method), count in Counter(zip(statuses, methods)).items():
            key = (_CLASS_OF.get(status[:1], OTHER), method if method in METHODS else OTHER)
            requests[key] = requests.get(key, 0) + count
        ordered = sorted(durations)
        below = 0
        for i, bound in enumerate(DURATION_BUCKETS):
            upto = bisect_right(ordered, bound)
            self.buckets[i] += upto - below
            below = upto
        self.buckets[-1] += len(ordered) - below
        self.duration_sum += sum(durations)
        self.response_bytes += sum(sent)
        self.request_bytes += sum(received)

    def report(self, **gauges: int) -> dict[str, Any]:
        """The payload of a STATS line: the cumulative counts so far plus the worker's
        ``gauges`` (accepted, in_flight, open, idle)."""
        self.add_up()
        return {"requests": [[status, method, count] for (status, method), count in self.requests.items()],
                "buckets": list(self.buckets), "duration_sum": self.duration_sum,
                "response_bytes": self.response_bytes, "request_bytes": self.request_bytes,
                "shed": dict(self.shed), **gauges}
