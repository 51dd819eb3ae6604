"""What ``GET /status.json`` on ``--metrics-bind`` reports: the live view's data, from the master.

``sharedsock status``/``top`` and the HTML page at ``/`` read it. Unlike ``/metrics`` it
carries what a person watching wants and Prometheus computes itself: each worker's
requests per second, and those rates over the last minutes (``RateHistory``) so a page
opened now shows a chart at once.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from typing import Any

from . import __version__
from .metrics import RequestCounts, listen_queue, worker_rss

WINDOW = 300.0  # seconds of rates kept per worker
MIN_STEP = 0.5  # reports closer than this (a final one right after a beat) wait for the next


class RateHistory:
    """Requests per second of each worker, one point per STATS report (about one a second).

    A point is what happened between the previous report (or the worker's boot) and this
    one. Histories outlive their worker by ``WINDOW``: the chart shows a reload's old
    generation fading out instead of vanishing."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.started_wall = time.time()
        self._last: dict[int, tuple[float, int]] = {}  # pid -> (when, cumulative requests)
        self.points: dict[int, deque[tuple[float, float]]] = {}  # pid -> (when, requests/s)
        self.index: dict[int, int] = {}  # pid -> worker index, for histories of exited workers

    def note(self, worker: Any, now: float) -> None:
        """After a STATS report from ``worker`` has been stored in ``worker.stats``."""
        if worker.stats is None:
            return
        pid = worker.pid
        count = sum(worker.stats.requests.values())
        last = self._last.get(pid)
        if last is None:  # it counted from 0 since it booted: its first report makes a point too
            last = (worker.ready_at or worker.started, 0)
            self.index[pid] = worker.index
            self.points[pid] = deque(maxlen=int(WINDOW / MIN_STEP) + 1)
            self._prune(now)
        when, before = last
        if now - when < MIN_STEP:
            self._last.setdefault(pid, last)
            return
        self._last[pid] = (now, count)
        self.points[pid].append((now, max(0, count - before) / (now - when)))

    def rate(self, pid: int, now: float) -> float:
        """The latest rate; 0 once the worker has not reported for a few seconds."""
        points = self.points.get(pid)
        if not points or now - points[-1][0] > 5.0:
            return 0.0
        return points[-1][1]

    def _prune(self, now: float) -> None:
        for pid, points in list(self.points.items()):
            last = points[-1][0] if points else self._last.get(pid, (now, 0))[0]
            if last < now - WINDOW:
                del self.points[pid], self.index[pid]
                self._last.pop(pid, None)

    def series(self, now: float) -> list[dict[str, Any]]:
        self._prune(now)
        return [{"pid": pid, "worker": self.index[pid],
                 "points": [[round(when - now, 2), round(rate, 2)] for when, rate in points
                            if when >= now - WINDOW]}
                for pid, points in self.points.items()]


def worker_state(w: Any) -> str:
    if w.kill_sent:
        return "killed"
    if w.abort_sent:
        return "aborting"
    if w.term_sent:
        return "draining"
    if not w.ready:
        return "starting"
    return "retiring" if w.leaving else "ready"


def snapshot(master: Any) -> dict[str, Any]:
    """The whole view at this moment, as plain data (``json`` ready)."""
    now = time.monotonic()
    wall = time.time()
    history: RateHistory = master.history
    counters = master.counters
    live = [w for w in master.workers if w.stats is not None]
    accepted_live = sum(w.stats.accepted for w in live)
    workers = []
    for w in sorted(master.workers, key=lambda x: (x.generation, x.index, x.pid)):
        stats = w.stats
        accepted = stats.accepted if stats is not None else 0
        workers.append({
            "worker": w.index, "pid": w.pid, "generation": w.generation, "state": worker_state(w),
            "requests": sum(stats.requests.values()) if stats is not None else 0,
            "requests_per_second": round(history.rate(w.pid, now), 2),
            "in_flight": stats.in_flight if stats is not None else 0,
            "connections_open": stats.open if stats is not None else 0,
            "accepted": accepted,
            "accepted_share": round(accepted / accepted_live, 4) if accepted_live else 0.0,
            "rss_bytes": worker_rss(w.pid),
            "age_seconds": round(now - w.started, 1),
            "started_at": round(wall - (now - w.started), 1),
            "heartbeat_age_seconds": round(max(0.0, now - w.last_beat), 2) if w.last_beat else None,
        })
    total = RequestCounts()
    total.add(counters.retired)
    for w in live:
        total.add(w.stats)
    listeners = []
    for listener in master.listeners:
        found = listen_queue(listener.sock)
        listeners.append({"url": listener.url, "queue": found[0] if found else None,
                          "limit": found[1] if found else None})
    return {
        "version": __version__,
        "master": {
            "pid": os.getpid(), "uptime_seconds": round(now - history.started, 1),
            "started_at": round(history.started_wall, 1),
            "generation": master.serving_generation or master.generation,
            "workers_wanted": master.target_workers, "workers_ready": master.ready_count(),
            "ready": master.is_ready(), "stopping": bool(master.stopping or master.quick_stop
                                                          or master.shutdown_at),
            "reloads": counters.reloads, "restarts": dict(counters.restarts),
        },
        "totals": {
            "requests": sum(total.requests.values()),
            "requests_per_second": round(sum(history.rate(w.pid, now) for w in master.workers), 2),
            "errors_5xx": sum(n for (status, _), n in total.requests.items() if status == "5xx"),
            "in_flight": sum(w.stats.in_flight for w in live),
            "connections_open": sum(w.stats.open for w in live),
            "accepted": total.accepted,
        },
        "listeners": listeners,
        "workers": workers,
        "history": {"window_seconds": WINDOW, "series": history.series(now)},
    }


def status_json(master: Any) -> tuple[int, str, bytes]:
    return 200, "application/json", json.dumps(snapshot(master), separators=(",", ":")).encode()
