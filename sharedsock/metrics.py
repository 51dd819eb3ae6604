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

RESTART_REASONS = ("crash", "timeout", "max_requests", "memory", "reload")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class MasterCounters:
    """Counts the master keeps for the whole life of the server."""

    reloads: int = 0
    restarts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESTART_REASONS, 0))


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
