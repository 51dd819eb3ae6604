#!/usr/bin/env python3
"""Overload: what a 10 ms app's clients get at a multiple of its capacity, with and without load shedding.

    python benchmarks/overload.py                        # 2 workers x 2 threads, 4x, 2 rounds
    python benchmarks/overload.py --factor 4 --duration 10 --rounds 3 --servers shed,noshed,gthread

The load is open-loop, as real clients are: requests are sent on a fixed schedule
(``--factor`` times the capacity, workers x threads / 10 ms), each on a new
connection, whatever the server's answers (so a slow server cannot slow the load
down and hide its own queue); a latency runs from the request's connect() to the
end of its response, and the table shows how late the generator itself ran. A
client waits at most ``--client-timeout`` seconds. Each server is first measured
unloaded (a quarter of its capacity), then overloaded, each on a freshly started
server; servers are interleaved round by round.

Compared: sharedsock with shedding (``--max-queue``, ``--max-queue-wait``),
sharedsock without, and gunicorn gthread (from benchmarks/.venv, installed with
the pin of requirements-peers.txt when missing, as run.py does). Prints a table:
answers by kind, the p50/p99/max latency of the 200s, the served p99 over the
unloaded p99, and the p99 of the 503s (how fast a refused client knows).
Uses only the standard library.
"""

from __future__ import annotations

import argparse
import errno
import multiprocessing
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as bench  # noqa: E402  (the suite's server launchers and process handling)

SERVICE = 0.010  # wsgi_basic:sleep10
APP = "wsgi_basic:sleep10"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
UNLOADED_FACTOR = 0.25


@dataclass(frozen=True)
class Config:
    name: str
    what: str
    argv: list[str]  # the server's extra flags


def _configs(args) -> dict[str, Config]:
    shed = ["--max-queue", str(args.max_queue), "--max-queue-wait", str(args.max_queue_wait)]
    return {
        "shed": Config("shed", "sharedsock " + " ".join(shed), shed),
        "noshed": Config("noshed", "sharedsock, no shedding", []),
        "gthread": Config("gthread", "gunicorn --worker-class gthread", []),
    }


def _launch(config: Config, port: int, workers: int, threads: int, tmp: Path) -> bench.Launch:
    if config.name == "gthread":
        return bench._gunicorn_gthread(None, APP, port, workers, threads, tmp)
    launch = bench._sharedsock(None, APP, port, workers, threads, tmp)
    launch.argv[-1:-1] = config.argv + ["--backlog", "4096"]
    return launch


def ensure_gunicorn() -> bool:
    """gunicorn alone, pinned as in requirements-peers.txt, into the suite's benchmarks/.venv."""
    if Path(bench._venv_bin("gunicorn")).exists():
        return True
    pin = next(r for r in bench._read_requirements() if r.startswith("gunicorn"))
    python = bench.VENV / "bin" / "python"
    if not python.exists() and subprocess.run([sys.executable, "-m", "venv", str(bench.VENV)]).returncode:
        return False
    return subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           pin]).returncode == 0


# -- the load ---------------------------------------------------------------


def _kind(data: bytes) -> str:
    return data[9:12].decode("latin-1") if data.startswith(b"HTTP/1.1 ") else "garbled"


def _error_kind(code: int) -> str:
    if code == errno.ECONNRESET:
        return "reset"
    if code == errno.ECONNREFUSED:
        return "refused"
    return f"error {errno.errorcode.get(code, code)}"


def _run_schedule(port: int, rate: float, duration: float, start: float, timeout: float):
    """One client process: open a connection per scheduled request, on one epoll, without
    asyncio's streams, so the generator stays cheap (on a 2-core machine it shares the CPUs
    with the server)."""
    poller = select.epoll()
    address = ("127.0.0.1", port)
    pending: dict[int, list] = {}  # fd -> [socket, connect() time, chunks, request sent]
    out: list = []
    count = int(rate * duration)
    sent = 0
    lag = 0.0
    next_sweep = 0.0

    def finish(fd: int, kind: str) -> None:
        sock, began = pending.pop(fd)[:2]
        poller.unregister(fd)
        sock.close()
        now = time.monotonic()
        out.append((kind, now - began, now - start))

    while sent < count or pending:
        now = time.monotonic()
        while sent < count and start + sent / rate <= now:
            lag = max(lag, now - (start + sent / rate))
            sent += 1
            sock = socket.socket()
            sock.setblocking(False)
            code = sock.connect_ex(address)
            if code not in (0, errno.EINPROGRESS):
                sock.close()
                out.append((_error_kind(code), 0.0, now - start))
                continue
            pending[sock.fileno()] = [sock, now, [], False]
            poller.register(sock.fileno(), select.EPOLLOUT)
        due = start + sent / rate if sent < count else now + 0.05
        for fd, _ in poller.poll(max(0.0, min(due - time.monotonic(), 0.05))):
            entry = pending[fd]
            sock = entry[0]
            if not entry[3]:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    finish(fd, _error_kind(code))
                    continue
                try:
                    sock.send(REQUEST)  # 50 bytes into an empty buffer: all at once
                except OSError as exc:
                    finish(fd, _error_kind(exc.errno or 0))
                    continue
                entry[3] = True
                poller.modify(fd, select.EPOLLIN)
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                finish(fd, _error_kind(exc.errno or 0))
                continue
            if data:
                entry[2].append(data)
            else:
                finish(fd, _kind(b"".join(entry[2])))
        now = time.monotonic()
        if now >= next_sweep:
            next_sweep = now + 0.05
            for fd in [fd for fd, entry in pending.items() if now - entry[1] > timeout]:
                finish(fd, "timeout")
    poller.close()
    return out, lag


def _client(port: int, rate: float, duration: float, start: float, timeout: float, queue) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    queue.put(_run_schedule(port, rate, duration, start, timeout))


def load(port: int, rate: float, duration: float, processes: int, timeout: float) -> tuple[list, float]:
    """Every request's (answer kind, latency, when it ended after the start), and the worst lag of
    the schedule."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start = time.monotonic() + 1.0  # room for the clients to start
    procs = [ctx.Process(target=_client, args=(port, rate / processes, duration, start, timeout, queue))
             for _ in range(processes)]
    for p in procs:
        p.start()
    results, lag = [], 0.0
    for _ in procs:
        out, worst = queue.get()
        results += out
        lag = max(lag, worst)
    for p in procs:
        p.join()
    return results, lag


# -- measuring ----------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(results: list, duration: float) -> dict:
    kinds: dict[str, int] = {}
    for kind, _, _ in results:
        kinds[kind] = kinds.get(kind, 0) + 1
    ok = [lat for kind, lat, _ in results if kind == "200"]
    shed = [lat for kind, lat, _ in results if kind == "503"]
    in_time = sum(1 for kind, _, ended in results if kind == "200" and ended <= duration)
    return {"sent": len(results), "kinds": kinds, "served_per_s": in_time / duration,
            "p50": _percentile(ok, 0.50), "p99": _percentile(ok, 0.99), "max": max(ok, default=None),
            "p99_503": _percentile(shed, 0.99)}


def measure(config: Config, rate: float, args, tmp: Path) -> dict:
    port = bench.free_port()
    launch = _launch(config, port, args.workers, args.threads, tmp)
    server = bench.RunningServer(bench.SERVERS["gunicorn-gthread" if config.name == "gthread" else "sharedsock"],
                                 launch, port, tmp / f"{config.name}-{port}.log", None)
    try:
        server.wait_ready(None)
        results, lag = load(port, rate, args.duration, args.clients, args.client_timeout)
        exited = server.proc.poll()
    finally:
        server.stop()
    if exited is not None:  # a signal from outside (a busy shared machine): the run does not count
        bench.log(f"{config.name} exited during the run ({exited}); measuring again")
        return None
    summary = summarize(results, args.duration)
    summary["lag"] = lag
    return summary


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def table(configs: list[Config], runs: dict, args, capacity: float) -> str:
    lines = [f"Overload: {args.workers} workers x {args.threads} threads, app sleeps 10 ms "
             f"(capacity {capacity:.0f} req/s); unloaded {UNLOADED_FACTOR * capacity:.0f} req/s, overload "
             f"{args.factor:g}x = {args.factor * capacity:.0f} req/s, open loop, a new connection per "
             f"request, {args.duration:g} s per run, client timeout {args.client_timeout:g} s, "
             f"{args.rounds} round(s); latencies in ms from connect() to the end of the response "
             "(time in the accept queue included), medians over rounds; served/s counts the 200s "
             "answered while the load ran; client lag: how late the generator sent its worst request.",
             "",
             "| server | load | sent | 200 | 503 | timeout | reset/other | served/s | p50 | p99 | max | "
             "p99 / unloaded p99 | 503 p99 | client lag |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for config in configs:
        unloaded = runs[(config.name, "unloaded")]
        base = statistics.median(r["p99"] for r in unloaded if r["p99"] is not None)
        for phase in ("unloaded", "overload"):
            rs = runs[(config.name, phase)]

            def med(key: str, rs=rs):
                values = [r[key] for r in rs if r[key] is not None]
                return statistics.median(values) if values else None

            def count(kind: str, rs=rs) -> int:
                return round(statistics.median(r["kinds"].get(kind, 0) for r in rs))

            other = round(statistics.median(sum(n for k, n in r["kinds"].items()
                                                if k not in ("200", "503", "timeout")) for r in rs))
            p99 = med("p99")
            ratio = "-" if p99 is None else f"{p99 / base:.1f}x"
            lines.append(f"| {config.what} | {phase} | {round(med('sent'))} | {count('200')} | {count('503')} | "
                         f"{count('timeout')} | {other} | {med('served_per_s'):.0f} | {_ms(med('p50'))} | "
                         f"{_ms(p99)} | {_ms(med('max'))} | {ratio} | {_ms(med('p99_503'))} | "
                         f"{_ms(med('lag'))} |")
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--factor", type=float, default=4.0, help="overload, times the capacity")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load per run")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--clients", type=int, default=2, help="load generator processes")
    p.add_argument("--client-timeout", type=float, default=5.0)
    p.add_argument("--max-queue", type=int, default=2, help="sharedsock --max-queue of the shed runs")
    p.add_argument("--max-queue-wait", type=float, default=0.02,
                   help="sharedsock --max-queue-wait of the shed runs")
    p.add_argument("--servers", default="shed,noshed,gthread")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    every = _configs(args)
    configs = [every[name] for name in args.servers.split(",")]
    if any(c.name == "gthread" for c in configs) and not ensure_gunicorn():
        print("overload: could not install gunicorn into benchmarks/.venv", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="sharedsock-overload-"))
    try:
        bench.freeze_sharedsock(tmp, None)
        runs = run_all(configs, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(configs, runs, args, args.workers * args.threads / SERVICE))
    return 0


def run_all(configs: list[Config], args, tmp: Path) -> dict:
    capacity = args.workers * args.threads / SERVICE
    runs: dict = {}
    for rnd in range(args.rounds):
        for config in configs:
            for phase, factor in (("unloaded", UNLOADED_FACTOR), ("overload", args.factor)):
                result = None
                for _ in range(3):
                    result = measure(config, factor * capacity, args, tmp)
                    if result is not None:
                        break
                if result is None:
                    raise SystemExit(f"{config.name} kept exiting during its runs")
                runs.setdefault((config.name, phase), []).append(result)
                bench.log(f"round {rnd + 1} {config.name} {phase}: {result['kinds']} "
                          f"p99 {_ms(result['p99'])} ms, lag {_ms(result['lag'])} ms")
    return runs


if __name__ == "__main__":
    sys.exit(main())
