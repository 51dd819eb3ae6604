"""What ``GET /metrics`` on ``--metrics-bind`` reports, in the Prometheus text format.

Built from the master's own state at each scrape, with prometheus_client's
exposition code (well kept, and the format has corner cases: escaping, counter
``_total`` suffixes, histogram buckets). Names are part of the interface and
are listed in the README.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .requeststats import DURATION_BUCKETS, METHODS, OTHER, SHED_REASONS, STATUS_CLASSES

RESTART_REASONS = ("crash", "timeout", "max_requests", "memory", "reload")
_PAGE = os.sysconf("SC_PAGE_SIZE")


_STATUS_LABELS = frozenset((*STATUS_CLASSES, OTHER))
_METHOD_LABELS = METHODS | {OTHER}


@dataclass
class RequestCounts:
    """Cumulative request counters: one worker's last report, or what departed workers added up to."""

    requests: dict[tuple[str, str], int] = field(default_factory=dict)  # (status class, method)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0
    response_bytes: int = 0
    request_bytes: int = 0
    accepted: int = 0
    shed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SHED_REASONS, 0))  # by reason

    def add(self, other: RequestCounts) -> None:
        for key, count in other.requests.items():
            self.requests[key] = self.requests.get(key, 0) + count
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets)]
        self.duration_sum += other.duration_sum
        self.response_bytes += other.response_bytes
        self.request_bytes += other.request_bytes
        self.accepted += other.accepted
        for reason in SHED_REASONS:
            self.shed[reason] += other.shed[reason]


@dataclass
class WorkerStats(RequestCounts):
    """A worker's STATS report: its counters, and gauges of the moment it was sent."""

    in_flight: int = 0
    open: int = 0
    idle: int = 0


def parse_worker_stats(data: Any) -> WorkerStats | None:
    """A STATS payload, None if it is not one; labels outside the known sets are dropped, so a
    worker (or the app in it) cannot grow the exposition."""
    try:
        stats = WorkerStats()
        for status, method, count in data["requests"]:
            if status in _STATUS_LABELS and method in _METHOD_LABELS:
                stats.requests[(status, method)] = int(count)
        buckets = [int(n) for n in data["buckets"]]
        if len(buckets) != len(stats.buckets):
            return None
        stats.buckets = buckets
        stats.duration_sum = float(data["duration_sum"])
        for name in ("response_bytes", "request_bytes", "accepted", "in_flight", "open", "idle"):
            setattr(stats, name, int(data[name]))
        shed = data.get("shed", {})
        if not isinstance(shed, dict):
            return None
        stats.shed = {reason: int(shed.get(reason, 0)) for reason in SHED_REASONS}
    except (TypeError, KeyError, ValueError):
        return None
    return stats


@dataclass
class MasterCounters:
    """Counts the master keeps for the whole life of the server."""

    reloads: int = 0
    restarts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESTART_REASONS, 0))
    retired: RequestCounts = field(default_factory=RequestCounts)  # final reports of exited workers


def worker_rss(pid: int) -> int | None:
    """Resident set size in bytes (``/proc/PID/statm``): what ``top`` shows and what a
    cgroup limit charges first; PSS would read every page table, for a number only
    cheaper to explain when a preloaded app shares most of its pages."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def listen_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(connections waiting to be accepted, the queue's limit) of a listening TCP socket:
    for a listener, Linux reports them in tcp_info's unacked and sacked fields."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return None
    waiting, limit = struct.unpack_from("II", info, 24)
    return waiting, limit


def exposition(master) -> tuple[str, bytes]:
    """(content type, body) of one scrape."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(master))
    return CONTENT_TYPE_LATEST, generate_latest(registry)


class _Collector:
    def __init__(self, master) -> None:
        self.master = master

    def collect(self) -> Iterator:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        master = self.master
        now = time.monotonic()
        counters: MasterCounters = master.counters
        yield GaugeMetricFamily("sharedsock_generation", "Worker generation now serving.",
                                value=master.serving_generation or master.generation)
        yield CounterMetricFamily("sharedsock_reloads", "Reloads (SIGHUP, --reload) since start.",
                                  value=counters.reloads)
        restarts = CounterMetricFamily("sharedsock_worker_restarts",
                                       "Workers replaced, by reason.", labels=["reason"])
        for reason in RESTART_REASONS:
            restarts.add_metric([reason], counters.restarts[reason])
        yield restarts
        states = GaugeMetricFamily("sharedsock_workers", "Worker processes, by state.",
                                   labels=["state"])
        counts = {"starting": 0, "ready": 0, "draining": 0}
        for w in master.workers:
            counts["draining" if w.term_sent else "ready" if w.ready else "starting"] += 1
        for state, count in counts.items():
            states.add_metric([state], count)
        yield states
        yield GaugeMetricFamily("sharedsock_workers_wanted", "Workers the master keeps running.",
                                value=master.target_workers)
        memory = GaugeMetricFamily("sharedsock_worker_memory_bytes", "Resident memory of a worker.",
                                   labels=["worker", "pid"])
        beat = GaugeMetricFamily("sharedsock_worker_heartbeat_age_seconds",
                                 "Time since a worker's last heartbeat.", labels=["worker", "pid"])
        for w in master.workers:
            labels = [str(w.index), str(w.pid)]
            rss = worker_rss(w.pid)
            if rss is not None:
                memory.add_metric(labels, rss)
            beat.add_metric(labels, max(0.0, now - w.last_beat))
        yield memory
        yield beat
        queue = GaugeMetricFamily("sharedsock_listen_queue_length",
                                  "Connections waiting in a listener's accept queue.",
                                  labels=["listener"])
        limit = GaugeMetricFamily("sharedsock_listen_queue_limit",
                                  "Size of a listener's accept queue.", labels=["listener"])
        for listener in master.listeners:
            found = listen_queue(listener.sock)
            if found is not None:
                queue.add_metric([listener.url], found[0])
                limit.add_metric([listener.url], found[1])
        yield queue
        yield limit
        yield GaugeMetricFamily("sharedsock_ready", "1 when /readyz answers 200.",
                                value=1 if master.is_ready() else 0)
        yield from _request_families(counters.retired, master.workers)
        yield from _shed_families(counters.retired, master.workers)


# (name, help, attribute) of the request counters and gauges. Each name is one family per live
# worker (labels worker, pid) and one for the whole server, prefixed SERVER (see _request_families).
_COUNTERS = (("response_bytes", "Response body bytes sent.", "response_bytes"),
             ("request_bytes", "Request body bytes the app read.", "request_bytes"),
             ("connections_accepted", "Client connections accepted.", "accepted"))
_GAUGES = (("requests_in_flight", "Requests being served now.", "in_flight"),
           ("connections_open", "Client connections held now.", "open"),
           ("connections_idle", "Kept-alive connections waiting for their next request.", "idle"))
SERVER = "server_"
_LE = [repr(b) for b in DURATION_BUCKETS] + ["+Inf"]
_WORKER_LABELS = ["worker", "pid"]


def _request_families(retired: RequestCounts, workers: list) -> Iterator:
    """``sharedsock_NAME{worker, pid}`` per live worker, and ``sharedsock_server_NAME`` for the
    whole server: what exited workers reported last plus what live ones report now, so its
    counters never go down when a worker is replaced. Two families rather than an "exited"
    series of the same name: ``rate()`` over such a series would count a departing worker's
    whole life again at the moment it left."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    live = [((str(w.index), str(w.pid)), w.stats) for w in workers if w.stats is not None]
    total = RequestCounts()
    total.add(retired)
    for _, stats in live:
        total.add(stats)

    def both(kind, name: str, doc: str, labels: list[str]) -> tuple:
        return (kind(f"sharedsock_{name}", f"{doc} Per live worker.", labels=_WORKER_LABELS + labels),
                kind(f"sharedsock_{SERVER}{name}", f"{doc} Whole server, exited workers included.",
                     labels=labels))

    per_worker, server = both(CounterMetricFamily, "requests", "Requests answered, by status class and "
                              "method.", ["status", "method"])
    for ids, stats in live:
        for (status, method), count in sorted(stats.requests.items()):
            per_worker.add_metric([*ids, status, method], count)
    for (status, method), count in sorted(total.requests.items()):
        server.add_metric([status, method], count)
    yield per_worker
    yield server
    per_worker, server = both(HistogramMetricFamily, "request_duration_seconds",
                              "Time from a request's head to the end of its response.", [])
    for ids, stats in live:
        per_worker.add_metric(list(ids), _cumulative(stats.buckets), stats.duration_sum)
    server.add_metric([], _cumulative(total.buckets), total.duration_sum)
    yield per_worker
    yield server
    for kind, table in ((CounterMetricFamily, _COUNTERS), (GaugeMetricFamily, _GAUGES)):
        for name, doc, attr in table:
            per_worker, server = both(kind, name, doc, [])
            for ids, stats in live:
                per_worker.add_metric(list(ids), getattr(stats, attr))
            # A gauge of the whole server is the live workers' sum: exited workers hold nothing.
            server.add_metric([], getattr(total, attr) if kind is CounterMetricFamily else
                              sum(getattr(stats, attr) for _, stats in live))
            yield per_worker
            yield server


def _shed_families(retired: RequestCounts, workers: list) -> Iterator:
    """Requests answered 503 by load shedding (never in requests_total: the app did not see
    them), named like the request families: ``sharedsock_requests_shed_total{worker, pid,
    reason}`` per live worker and ``sharedsock_server_requests_shed_total{reason}``."""
    from prometheus_client.core import CounterMetricFamily

    doc = "Requests answered 503 without the app by load shedding, by reason (queue, wait)."
    per_worker = CounterMetricFamily("sharedsock_requests_shed", f"{doc} Per live worker.",
                                     labels=[*_WORKER_LABELS, "reason"])
    server = CounterMetricFamily(f"sharedsock_{SERVER}requests_shed",
                                 f"{doc} Whole server, exited workers included.", labels=["reason"])
    live = [w for w in workers if w.stats is not None]
    for reason in SHED_REASONS:
        server.add_metric([reason], retired.shed[reason] + sum(w.stats.shed[reason] for w in live))
        for w in live:
            per_worker.add_metric([str(w.index), str(w.pid), reason], w.stats.shed[reason])
    yield per_worker
    yield server


def _cumulative(buckets: list[int]) -> list[tuple[str, int]]:
    running, out = 0, []
    for le, count in zip(_LE, buckets):
        running += count
        out.append((le, running))
    return out
