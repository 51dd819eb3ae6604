"""The scenarios: each puts the bed under the same constant load (every balancer, both apps, a
keep-alive client and a new-connection client for each) while it does one thing to the hosts,
then judges every response the load got.

Steps are spaced by traffic ("until each balancer got N more responses from host h2"), never by
sleeps, so a slow machine makes a run longer, not different.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .bed import Bed
from .hosts import APPS, SHUTDOWN_DELAY, Host, gone, metric, parse_metrics, wait_for
from .load import Load, Outcome
from .packages import say

SETTLE = 20  # responses per balancer between steps
# Inline (one thread): a request found ready while another runs is shed at once.
OVERLOAD_OPTIONS = ["--threads", "1", "--max-queue", "0"]
STEP_TIMEOUT = 60.0


@dataclass
class Result:
    name: str
    outcomes: list[Outcome] = field(default_factory=list)
    passed: bool = True
    available: bool = True
    notes: list[str] = field(default_factory=list)
    shares: dict[tuple[str, str, str, str], float] = field(default_factory=dict)

    def fail(self, why: str) -> None:
        self.passed = False
        self.notes.append(f"FAILED: {why}")

    @property
    def requests(self) -> int:
        return len(self.outcomes)

    @property
    def non_2xx(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status and not o.ok]

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.status]

    def bad(self, since: float = 0.0, until: float = float("inf")) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok and since <= o.ended <= until]

    def require_clean(self) -> None:
        if self.non_2xx or self.errors:
            self.fail(f"{len(self.non_2xx)} non-2xx, {len(self.errors)} connection errors; first: "
                      f"{describe(self.bad()[:3])}")


def describe(outcomes: list[Outcome]) -> str:
    return "; ".join(f"{o.target.label}: {o.status or o.error}" for o in outcomes) or "none"


def wait_masters_gone(pids: list[int], timeout: float = STEP_TIMEOUT) -> None:
    wait_for(lambda: all(gone(pid) for pid in pids), timeout, f"masters {pids} to exit")


def generation(host: Host) -> dict[str, float]:
    return {app.name: metric(host.metrics(app), "sharedsock_generation") for app in APPS}


def settled(host: Host, generations: dict[str, float]) -> bool:
    """Every app on the host serves a newer generation, with no worker starting or draining."""
    for app in APPS:
        text = host.metrics(app)
        if metric(text, "sharedsock_generation") <= generations[app.name]:
            return False
        if metric(text, "sharedsock_workers", state="starting") or metric(text, "sharedsock_workers",
                                                                          state="draining"):
            return False
    return True


# -- the scenarios ---------------------------------------------------------------------------


def steady(bed: Bed, result: Result) -> None:
    """No disturbance: the control run, and the share of requests per host and worker, from
    the hosts' own metrics, which must add up exactly to what the client got."""
    before = stable_counts(bed)
    with Load(bed.targets()) as load:
        load.wait_responses(SETTLE * 12)
    result.outcomes = load.snapshot()
    result.require_clean()
    expected = len(result.outcomes)

    def reached() -> dict | None:
        counts = bed_counts(bed)
        return counts if sum(counts.values()) - sum(before.values()) >= expected else None

    try:
        wait_for(reached, STEP_TIMEOUT, "the hosts' metrics to count the client's requests", interval=0.25)
    except TimeoutError:
        pass
    after = stable_counts(bed)  # and nothing more arrives
    deltas = {key: after[key] - before.get(key, 0) for key in after}
    total = sum(deltas.values())
    if total != expected:
        result.fail(f"the hosts' metrics count {total:g} requests, the client got {expected}")
    else:
        result.notes.append(f"the hosts' metrics count exactly the {expected} requests the client got")
    result.shares = deltas


def stable_counts(bed: Bed) -> dict[tuple[str, str, str, str], float]:
    """The hosts' request counts once they stop moving: workers report them about once a
    second, so equal readings 2 s apart include every request served before the first."""
    previous = bed_counts(bed)
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        time.sleep(2.0)
        current = bed_counts(bed)
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current


def bed_counts(bed: Bed) -> dict[tuple[str, str, str, str], float]:
    """(host, app, worker, pid) -> requests, from each master's /metrics."""
    counts: dict[tuple[str, str, str, str], float] = {}
    for host in bed.hosts:
        for app in APPS:
            for name, labels, value in parse_metrics(host.metrics(app)):
                if name == "sharedsock_worker_memory_bytes":  # every live worker, busy or not
                    key = (host.name, app.name, labels.get("worker", "?"), labels.get("pid", "?"))
                    counts.setdefault(key, 0)
                elif name == "sharedsock_requests_total":  # per worker: labels worker, pid
                    key = (host.name, app.name, labels.get("worker", "?"), labels.get("pid", "?"))
                    counts[key] = counts.get(key, 0) + value
    return counts


def checks_down(bed: Bed) -> int:
    """How many times HAProxy has taken a server out of rotation since it started."""
    return sum(int(row["chkdown"] or 0) for row in bed.haproxy.stats() if row["svname"].startswith("h"))


def rolling_sighup(bed: Bed, result: Result) -> None:
    """SIGHUP to both masters of each host in turn: a new worker generation, old one drains."""
    downs = checks_down(bed)
    with Load(bed.targets()) as load:
        load.wait_responses(SETTLE)
        for host in bed.hosts:
            before = generation(host)
            host.signal_masters(signal.SIGHUP)
            wait_for(lambda host=host, before=before: settled(host, before), STEP_TIMEOUT,
                     f"{host.name} to finish its reload", interval=0.1)
            load.wait_responses(SETTLE, host=host.name)
    result.outcomes = load.snapshot()
    result.require_clean()
    result.notes.append(f"HAProxy took a host out of rotation {checks_down(bed) - downs} times "
                        f"(/readyz stays 200 through a reload)")


def rolling_sigusr2(bed: Bed, result: Result) -> None:
    """SIGUSR2 to both masters of each host in turn, after release 2 of the code is on disk on
    every host. A host not yet upgraded still says release 1 (its master preloaded release 1);
    once its old masters are gone, every response from it must say release 2."""
    for host in bed.hosts:
        host.write_release("2")
    written = time.monotonic()
    downs = checks_down(bed)
    done: dict[str, float] = {}
    with Load(bed.targets()) as load:
        load.wait_responses(SETTLE)
        for host in bed.hosts:
            old = host.signal_masters(signal.SIGUSR2)
            wait_for(lambda host=host, old=old: len(set(host.masters()) - set(old)) == 2, STEP_TIMEOUT,
                     f"{host.name}'s new masters to write their pid files", interval=0.1)
            wait_masters_gone(old)
            done[host.name] = time.monotonic()
            load.wait_responses(SETTLE, since=done[host.name], host=host.name)
    result.outcomes = load.snapshot()
    result.require_clean()
    for host in bed.hosts:
        # Sent after the old masters were gone: a response that merely arrived later may have
        # been in flight on an old worker (the load threads note the time when they next run).
        after = [o for o in result.outcomes if o.host == host.name and o.started > done[host.name]]
        stale = [o for o in after if o.release != "2"]
        if stale or not after:
            result.fail(f"{host.name}: {len(stale)} of {len(after)} requests sent after its upgrade "
                        f"were not answered by release 2")
    old_code = sum(1 for o in result.outcomes if o.release == "1" and o.ended > written)
    result.notes.append(f"every host ends on release 2; {old_code} responses said release 1 after "
                        f"release 2 was on disk, from hosts not yet upgraded")
    result.notes.append(f"HAProxy took a host's app out of rotation {checks_down(bed) - downs} times "
                        f"during the upgrades (the new master takes --metrics-bind over with the "
                        f"listeners and answers /readyz while the old one's workers serve)")


def sigkill_host(bed: Bed, result: Result, victim_index: int = 0) -> None:
    """SIGKILL every process of one host at once; HAProxy's checks take it out, retries cover
    the requests that were on it, and the host restarted comes back into rotation."""
    host = bed.hosts[victim_index]
    inter, fall = bed.haproxy.check_settings()
    with Load(bed.targets()) as load:
        load.wait_responses(SETTLE, host=host.name)
        killed_at = time.monotonic()
        count = host.kill()
        down_at = bed.haproxy.wait_status(host.name, "DOWN", STEP_TIMEOUT)
        load.wait_responses(SETTLE, since=down_at)
        host.start()
        bed.wait_hosts_ready([host])
        up_at = bed.haproxy.wait_status(host.name, "UP", STEP_TIMEOUT)
        load.wait_responses(SETTLE, since=up_at, host=host.name)
    result.outcomes = load.snapshot()
    in_flight = result.bad(killed_at, down_at)
    late = result.bad(down_at) + result.bad(0, killed_at)
    clients = len(load.clients)
    detect = down_at - killed_at
    bound = fall * inter + 1.0
    result.notes.append(f"killed {count} processes of {host.name}; HAProxy marked it DOWN after "
                        f"{detect:.2f} s (checks every {inter:g} s, fall {fall}); "
                        f"{len(in_flight)} requests failed before that (at most {clients}, one per "
                        f"client, may have been in flight); nginx retried {bed.nginx.retried()} "
                        f"requests on another host; back in rotation via both balancers after restart")
    if late:
        result.fail(f"{len(late)} failures outside the kill-to-DOWN window: {describe(late[:3])}")
    if len(in_flight) > clients:
        result.fail(f"{len(in_flight)} failures while the host was going down: {describe(in_flight[:3])}")
    if detect > bound:
        result.fail(f"HAProxy took {detect:.2f} s to mark {host.name} DOWN, over {bound:g} s")


def sigterm_host(bed: Bed, result: Result, victim_index: int = 1) -> None:
    """SIGTERM with --shutdown-delay: /readyz turns 503, HAProxy takes the host out while its
    workers still serve, and only then do they drain. No request may fail."""
    host = bed.hosts[victim_index]
    with Load(bed.targets()) as load:
        load.wait_responses(SETTLE, host=host.name)
        old = host.signal_masters(signal.SIGTERM)
        term_at = time.monotonic()
        down_at = bed.haproxy.wait_status(host.name, "DOWN", STEP_TIMEOUT)
        wait_masters_gone(old)
        gone_at = time.monotonic()
        load.wait_responses(SETTLE, since=gone_at)
        host.start()
        bed.wait_hosts_ready([host])
        up_at = bed.haproxy.wait_status(host.name, "UP", STEP_TIMEOUT)
        load.wait_responses(SETTLE, since=up_at, host=host.name)
    result.outcomes = load.snapshot()
    result.require_clean()
    result.notes.append(f"HAProxy saw /readyz 503 and marked {host.name} DOWN {down_at - term_at:.2f} s "
                        f"after SIGTERM, before the drain began at {SHUTDOWN_DELAY:g} s; masters gone "
                        f"after {gone_at - term_at:.2f} s")
    if down_at - term_at >= SHUTDOWN_DELAY:
        result.fail(f"HAProxy marked {host.name} DOWN only {down_at - term_at:.2f} s after SIGTERM, "
                    f"not before --shutdown-delay {SHUTDOWN_DELAY:g} s was over")


def max_queue_available() -> bool:
    help_text = subprocess.run([sys.executable, "-m", "sharedsock", "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    return "--max-queue" in help_text


def overloaded_host(bed: Bed, result: Result, victim_index: int = 2) -> None:
    """One host restarted with --threads 1 --max-queue 0 and every request slowed to 0.1 s, so
    it can serve about 20 requests a second while round robin sends it a third of three times
    the usual load: it sheds what it cannot take with 503s (what it has not accepted yet waits
    in its backlog), which HAProxy (retry-on 503) and nginx (proxy_next_upstream http_503)
    retry on another host. The client must see none of them."""
    if not max_queue_available():
        result.available = False
        result.notes.append("not available: this sharedsock has no --max-queue (`sharedsock --help`)")
        return
    host = bed.hosts[victim_index]
    restart(bed, host, OVERLOAD_OPTIONS, {"SSK_CLUSTER_DELAY": "0.1"})
    try:
        haproxy_before = haproxy_shed(bed, host)
        nginx_before = bed.nginx.retried_after(503)
        with Load(bed.targets() * 3) as load:  # three times the clients: the host is over capacity
            load.wait_responses(SETTLE * 24)
        result.outcomes = load.snapshot()
        result.require_clean()
        host_shed = sum(metric(stable_text(host, app), "sharedsock_server_requests_shed_total")
                        for app in APPS)
        haproxy_count = haproxy_shed(bed, host) - haproxy_before
        nginx_count = bed.nginx.retried_after(503) - nginx_before
        result.notes.append(f"{host.name} shed {host_shed:g} requests with 503 (its "
                            f"sharedsock_server_requests_shed_total); HAProxy retried {haproxy_count} "
                            f"of them "
                            f"on another host, nginx {nginx_count}; the client saw none")
        if host_shed + haproxy_count + nginx_count == 0:
            result.fail(f"{host.name} shed nothing: the scenario did not overload it")
    finally:
        restart(bed, host, [], {})


def haproxy_shed(bed: Bed, host: Host) -> int:
    """503s HAProxy got from the host, or requests it took away from it to retry elsewhere."""
    total = 0
    for app in APPS:
        row = bed.haproxy.server(app.name, host.name)
        total += max(int(row["hrsp_5xx"] or 0), int(row["wredis"] or 0))
    return total


def stable_text(host: Host, app) -> str:
    """The app's /metrics once its workers have reported (they batch about once a second)."""
    previous = host.metrics(app)
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        time.sleep(1.5)
        current = host.metrics(app)
        if metric(current, "sharedsock_server_requests_shed_total") == metric(
                previous, "sharedsock_server_requests_shed_total") or time.monotonic() > deadline:
            return current
        previous = current


def restart(bed: Bed, host: Host, extra: list[str], env: dict[str, str]) -> None:
    """Stop the host's masters gracefully and start them again with other options."""
    old = host.signal_masters(signal.SIGTERM)
    wait_masters_gone(old)
    host.start(extra, env)
    bed.wait_hosts_ready([host])
    bed.haproxy.wait_status(host.name, "UP", STEP_TIMEOUT)


SCENARIOS: list[tuple[str, Callable[[Bed, Result], None]]] = [
    ("steady load (control)", steady),
    ("rolling SIGHUP of 3 hosts", rolling_sighup),
    ("rolling SIGUSR2 upgrade of 3 hosts", rolling_sigusr2),
    ("SIGKILL of a host's master and workers", sigkill_host),
    ("SIGTERM with --shutdown-delay", sigterm_host),
    ("one host overloaded, --max-queue", overloaded_host),
]


def run_all(bed: Bed, results_file: Path | None, only: list[str] | None = None) -> int:
    from .report import print_report

    started = time.monotonic()
    results = []
    for name, scenario in SCENARIOS:
        if only and not any(word.lower() in name.lower() for word in only):
            continue
        say(f"scenario: {name}")
        result = Result(name)
        try:
            scenario(bed, result)
        except (TimeoutError, RuntimeError, OSError) as exc:
            result.fail(f"{type(exc).__name__}: {exc}")
        results.append(result)
        for note in result.notes:
            say(f"  {note}")
    print_report(results, bed, time.monotonic() - started, results_file)
    return 0 if all(r.passed for r in results) else 1
