"""Per-worker request counters: noted on the request path, added up and reported in batches.

A request only adds its five values to a list (``RequestStats.record``, the
list's own ``extend``: no Python frame, no lock, safe from pool threads). About
once a second the worker's loop adds the queue up, with C loops only (``map``,
``filter``, ``Counter``, ``sum``), and sends the cumulative totals to the
master over the control channel (``channel.STATS``), so a lost line costs
nothing; the master turns them into ``/metrics`` (see ``metrics``). Labels are
bounded: a status class and one of the common methods, anything else ``other``.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

# Upper bounds (seconds) of the request duration histogram; a last bucket holds the rest.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"))
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
OTHER = "other"  # a method not in METHODS; a status class when no response was sent
SHED_REASONS = ("queue", "wait")  # answered 503 by load shedding: queue full, or waited too long
_CLASS_OF = {c[0]: c for c in STATUS_CLASSES}
_FIELDS = 5  # status, method, duration, response bytes, request bytes
_FIRST_BOUND = DURATION_BUCKETS[0]


class RequestStats:
    """What one worker's requests added up to since it started.

    ``record((status, method, duration, response bytes, request bytes))`` runs
    once per request, from any thread; ``add_up`` and ``report`` only from the
    worker's loop.
    """

    __slots__ = ("record", "_items", "requests", "buckets", "duration_sum", "response_bytes",
                 "request_bytes", "note_shed", "_shed_queue", "shed")

    def __init__(self, threaded: bool = False) -> None:
        """``threaded`` (pool threads record while the loop adds up) needs nothing more: see
        ``add_up``."""
        # Flat, five items a request: the tuple given to record() is freed at once (and reused
        # for the next request), so what waits for add_up is five pointers in one array plus
        # the duration, not a tuple per request scattered over the heap, cold by add_up's time.
        self._items: list[Any] = []
        self.record = self._items.extend
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
        """Fold the recorded requests into the totals.

        Written for the common batch: one method, a few statuses, most durations in the first
        buckets; no Python frame per request."""
        shed_queue, shed = self._shed_queue, self.shed
        for _ in range(len(shed_queue)):  # appends may race, from pool threads and the loop
            shed[shed_queue.popleft()] += 1
        items = self._items
        n = len(items) // _FIELDS * _FIELDS
        if not n:
            return
        # A pool thread may record meanwhile: its extend (one call, whole) lands after the
        # first n items, which this takes and removes; nothing is lost or taken twice.
        batch = items[:n]
        del items[:n]
        statuses, methods = batch[0::_FIELDS], batch[1::_FIELDS]
        durations = batch[2::_FIELDS]
        requests = self.requests
        counted: Iterable[tuple[tuple[str, str], int]]
        if methods.count(methods[0]) == len(methods):  # identity compares: the parser interns methods
            method, status = methods[0], statuses[0]
            alike = statuses.count(status) == len(statuses)
            by_status = {status: len(statuses)} if alike else Counter(statuses)
            counted = [((status, method), count) for status, count in by_status.items()]
        else:
            counted = Counter(zip(statuses, methods)).items()
        for (status, method), count in counted:
            key = (_CLASS_OF.get(status[:1], OTHER), method if method in METHODS else OTHER)
            requests[key] = requests.get(key, 0) + count
        buckets = self.buckets
        rest = durations
        if max(durations) <= _FIRST_BOUND:  # all in the first bucket: no filtering pass
            buckets[0] += len(durations)
            rest = []
        for i, bound in enumerate(DURATION_BUCKETS):  # each pass keeps what is above the bound
            if not rest:
                break
            above = list(filter(bound.__lt__, rest))
            buckets[i] += len(rest) - len(above)
            rest = above
        buckets[-1] += len(rest)
        self.duration_sum += sum(durations)
        self.response_bytes += sum(batch[3::_FIELDS])
        self.request_bytes += sum(batch[4::_FIELDS])

    def report(self, **gauges: int) -> dict[str, Any]:
        """The payload of a STATS line: the cumulative counts so far plus the worker's
        ``gauges`` (accepted, in_flight, open, idle)."""
        self.add_up()
        return {"requests": [[status, method, count] for (status, method), count in self.requests.items()],
                "buckets": list(self.buckets), "duration_sum": self.duration_sum,
                "response_bytes": self.response_bytes, "request_bytes": self.request_bytes,
                "shed": dict(self.shed), **gauges}
