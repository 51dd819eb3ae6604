"""The load: Python threads with http.client, each asking one balancer for one app at a steady
pace, on one kept-alive connection or on a new connection per request. Every response and every
connection error is recorded with the time it ended, the host that answered and the release it
ran, so a scenario can count exactly what happened before and after each of its steps.

Load is bounded: it goes only to the balancers' loopback ports, at a fixed rate per thread, and
stops after a time limit or a request count, whichever comes first.
"""

from __future__ import annotations

import http.client
import math
import threading
import time
from dataclasses import dataclass, field

RATE = 20.0  # requests per second per thread
TIMEOUT = 15.0  # seconds a request may take before it counts as a connection error
MAX_SECONDS = 90.0  # a load never runs longer than this ...
MAX_REQUESTS = 3000  # ... nor sends more than this per thread


@dataclass(frozen=True)
class Target:
    balancer: str
    app: str
    port: int
    path: str
    keepalive: bool

    @property
    def label(self) -> str:
        return f"{self.balancer}/{self.app}/{'keep-alive' if self.keepalive else 'new connection'}"


@dataclass(frozen=True)
class Outcome:
    target: Target
    started: float
    ended: float
    status: int = 0  # 0: no response (see error)
    host: str = ""
    release: str = ""
    error: str = ""

    @property
    def latency(self) -> float:
        return self.ended - self.started

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Client(threading.Thread):
    def __init__(self, target: Target, load: Load, rate: float) -> None:
        super().__init__(name=f"load {target.label}", daemon=True)
        self.target = target
        self.load = load
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.conn: http.client.HTTPConnection | None = None

    def run(self) -> None:
        sent = 0
        next_at = time.monotonic()
        try:
            while not self.load.stopping.is_set() and sent < self.load.max_requests:
                if time.monotonic() > self.load.deadline:
                    self.load.ended_early = f"the load's time limit ({self.load.max_seconds:g} s)"
                    break
                self.load.record(self.one())
                sent += 1
                if self.interval:
                    next_at = max(next_at + self.interval, time.monotonic() - self.interval)
                    self.load.stopping.wait(max(0.0, next_at - time.monotonic()))
            else:
                if sent >= self.load.max_requests:
                    self.load.ended_early = f"the load's request limit ({self.load.max_requests})"
        finally:
            self.close()

    def one(self) -> Outcome:
        target = self.target
        started = time.monotonic()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=TIMEOUT)
            headers = {} if target.keepalive else {"Connection": "close"}
            self.conn.request("GET", target.path, headers=headers)
            response = self.conn.getresponse()
            response.read()
            outcome = Outcome(target, started, time.monotonic(), response.status,
                              response.getheader("X-Cluster-Host", ""), response.getheader("X-Release", ""))
            if not target.keepalive or response.will_close:
                self.close()
            return outcome
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return Outcome(target, started, time.monotonic(), error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Load:
    """``with Load(targets) as load:`` runs every target's client until the block ends."""

    targets: list[Target]
    rate: float = RATE
    max_seconds: float = MAX_SECONDS
    max_requests: int = MAX_REQUESTS
    outcomes: list[Outcome] = field(default_factory=list)
    ended_early: str = ""

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.clients = [Client(target, self, self.rate) for target in self.targets]
        self.deadline = 0.0

    def record(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def __enter__(self) -> Load:
        self.deadline = time.monotonic() + self.max_seconds
        for client in self.clients:
            client.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        for client in self.clients:
            client.join(TIMEOUT + 5)

    def snapshot(self) -> list[Outcome]:
        with self.lock:
            return list(self.outcomes)

    def wait_responses(self, count: int, since: float | None = None, host: str | None = None,
                       timeout: float = 30.0) -> None:
        """Until ``count`` good responses (from ``host``, through every balancer) came after
        ``since``; the steps of a scenario are spaced by traffic, not by sleeps."""
        since = time.monotonic() if since is None else since
        balancers = {t.balancer for t in self.targets}
        deadline = time.monotonic() + timeout

        def enough() -> bool:
            outcomes = [o for o in self.snapshot() if o.ended >= since and o.ok
                        and (host is None or o.host == host)]
            return all(sum(1 for o in outcomes if o.target.balancer == b) >= count for b in balancers)

        while not enough():
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} responses{' from ' + host if host else ''} "
                                   f"per balancer within {timeout:g}s")
            if self.ended_early:
                raise TimeoutError(f"the load stopped early: {self.ended_early}")
            time.sleep(0.05)


def p99(latencies: list[float]) -> float:
    if not latencies:
        return 0.0
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
