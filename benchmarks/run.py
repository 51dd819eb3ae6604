#!/usr/bin/env python3
"""Side-by-side HTTP benchmarks of sharedsock and its peers.

    python benchmarks/run.py                       # full suite, per-core mode
    python benchmarks/run.py --duration 1 --rounds 1 --scenarios hello-keepalive --servers sharedsock

Installs its own tools: wrk and nginx with apt-get, the peer servers (gunicorn,
waitress, granian) and matplotlib into benchmarks/.venv. sharedsock runs from
the interpreter that runs this script. See benchmarks/README.md.

Uses only the standard library, so it runs in the project's environment
without changing it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
APPS = HERE / "apps"
LUA = HERE / "lua"
VENV = HERE / ".venv"
REQUIREMENTS = HERE / "requirements-peers.txt"
DEFAULT_OUTPUT = HERE / "results"

EXIT_NO_WRK = 75  # the smoke test skips on this code, and only on this one
READY_DEADLINE = 60.0
WRK_TIMEOUT = "5s"
PY_SPY = "py-spy==0.4.3"  # installed into benchmarks/.venv only for --profile
BODY_64K = b"0123456789abcdef" * 4096  # what lua/post64k.lua sends

# --------------------------------------------------------------------------
# Scenarios


def _expect(exact: bytes | None = None, length: int | None = None,
            pattern: bytes | None = None) -> Callable[[bytes], str | None]:
    def check(body: bytes) -> str | None:
        if exact is not None and body != exact:
            return f"expected {exact!r}, got {body[:80]!r}"
        if length is not None and len(body) != length:
            return f"expected {length} bytes, got {len(body)}"
        if pattern is not None and not re.search(pattern, body):
            return f"expected {pattern!r} in {body[:80]!r}"
        return None
    return check


@dataclass(frozen=True)
class Scenario:
    name: str
    app: str  # MODULE:CALLABLE, importable from benchmarks/apps
    path: str
    what: str
    check: Callable[[bytes], str | None]
    threads: int = 1  # app threads per worker (gunicorn sync always has 1)
    fixed_threads: bool = False  # the scenario is defined by its thread count: --threads does not vary it
    connections: int = 64
    close: bool = False  # new connection per request
    lua: str | None = None
    method: str = "GET"
    nginx: bool = False  # nginx `return 200` ceiling applies


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("hello-keepalive", "wsgi_basic:hello", "/", "plain WSGI hello world, keep-alive",
             _expect(exact=b"Hello, World!\n"), nginx=True),
    Scenario("hello-close", "wsgi_basic:hello", "/",
             "plain WSGI hello world, a new connection per request (Connection: close)",
             _expect(exact=b"Hello, World!\n"), close=True, nginx=True),
    Scenario("flask-json", "flask_app:app", "/json", "Flask view returning jsonify(...)",
             _expect(pattern=rb'"message":\s*"Hello, World!"')),
    Scenario("flask-template", "flask_app:app", "/template", "Flask view rendering a Jinja2 table of 20 rows",
             _expect(pattern=rb"item &lt;20&gt;")),
    Scenario("django-json", "djproject.wsgi:application", "/json",
             "Django view returning JsonResponse (DEBUG off, 3 middlewares)",
             _expect(pattern=rb'"message":\s*"Hello, World!"')),
    Scenario("django-template", "djproject.wsgi:application", "/template",
             "Django view rendering a template table of 20 rows", _expect(pattern=rb"item &lt;20&gt;")),
    Scenario("db-10ms", "wsgi_basic:sleep10", "/",
             "each request sleeps 10 ms (a stand-in DB call); 4 app threads per worker",
             _expect(exact=b"ok\n"), threads=4, fixed_threads=True),
    Scenario("big-1mib", "wsgi_basic:big", "/", "1 MiB response body", _expect(length=1 << 20)),
    Scenario("post-64kib", "wsgi_basic:consume", "/", "64 KiB POST body read by the app",
             _expect(exact=b"received 65536 bytes\n"), lua="post64k.lua", method="POST"),
]}
FAIRNESS = "fairness"
ALL_SCENARIOS = list(SCENARIOS) + [FAIRNESS]
DEFAULT_THREADS = "1,4"
_VARIANT = re.compile(r"^(.*)-t(\d+)$")


def variant(scenario: Scenario, threads: int) -> Scenario:
    """The scenario run with ``threads`` app threads, labelled so: ``hello-keepalive-t4``."""
    threads = scenario.threads if scenario.fixed_threads else threads
    base = _VARIANT.sub(r"\1", scenario.name) if scenario.name not in SCENARIOS else scenario.name
    return replace(scenario, name=f"{base}-t{threads}", threads=threads)


def variants(names: list[str], thread_counts: list[int]) -> list[Scenario]:
    """Every scenario at every thread count, thread counts side by side (fixed ones once)."""
    out: dict[str, Scenario] = {}
    for name in names:
        if name in SCENARIOS:
            for threads in thread_counts:
                v = variant(SCENARIOS[name], threads)
                out.setdefault(v.name, v)
    return list(out.values())


def scenario_named(label: str) -> Scenario:
    """The scenario behind a result's label (``flask-json-t4``, or a bare name in older results)."""
    if label in SCENARIOS:
        return SCENARIOS[label]
    match = _VARIANT.match(label)
    if match and match.group(1) in SCENARIOS:
        return variant(SCENARIOS[match.group(1)], int(match.group(2)))
    raise KeyError(label)


def base_name(label: str) -> str:
    match = _VARIANT.match(label)
    return match.group(1) if match and match.group(1) in SCENARIOS else label

# --------------------------------------------------------------------------
# Servers


@dataclass
class Launch:
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    ready_pattern: str | None = None  # one log line per booted worker
    ready_count: int = 0
    cleanup: Callable[[], None] | None = None


def _venv_bin(name: str) -> str:
    return str(VENV / "bin" / name)


def _app_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SHAREDSOCK_", "GUNICORN_", "GRANIAN_", "WAITRESS_"))}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    env["PYTHONPATH"] = str(APPS)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


@dataclass(frozen=True)
class ServerKind:
    name: str
    peer: bool  # lives in benchmarks/.venv
    multi_process: bool
    build: Callable[[Scenario | None, str, int, int, int, Path], Launch]
    what: str


# A frozen copy of the sharedsock package, taken when the suite starts (see freeze_sharedsock):
# commits or edits landing in the working tree during a long run must not change the code
# measured from one round to the next.
SHAREDSOCK_SRC: Path | None = None
BASELINE_SRC: Path | None = None  # --baseline-ref: the code sharedsock-base runs, for an A/B in one run


def _sharedsock(sc, app, port, workers, threads, tmp) -> Launch:
    argv = [sys.executable, "-m", "sharedsock", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads), app]
    env = _app_env()
    if SHAREDSOCK_SRC is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(SHAREDSOCK_SRC), str(APPS)])
    return Launch(argv, APPS, env, r"Booted worker (\d+) \(generation", workers)


def _sharedsock_metrics(sc, app, port, workers, threads, tmp) -> Launch:
    """sharedsock counting every request for /metrics: its ratio to plain sharedsock is the cost."""
    launch = _sharedsock(sc, app, port, workers, threads, tmp)
    launch.argv[3:3] = ["--metrics-bind", "127.0.0.1:0"]
    return launch


def _sharedsock_base(sc, app, port, workers, threads, tmp) -> Launch:
    launch = _sharedsock(sc, app, port, workers, threads, tmp)
    launch.env["PYTHONPATH"] = os.pathsep.join([str(BASELINE_SRC), str(APPS)])
    return launch


def freeze_sharedsock(tmp: Path, ref: str | None) -> str:
    """Copy sharedsock/ (the working tree's, or ``ref``'s from git) to ``tmp``; describe it."""
    global SHAREDSOCK_SRC
    SHAREDSOCK_SRC, text = _freeze(tmp / "sharedsock-src", ref)
    return text


def freeze_baseline(tmp: Path, ref: str) -> str:
    global BASELINE_SRC
    BASELINE_SRC, text = _freeze(tmp / "sharedsock-base-src", ref)
    return text


def _freeze(dest: Path, ref: str | None) -> tuple[Path, str]:
    dest.mkdir()
    if ref:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "sharedsock"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        commit = _run_text(["git", "-C", str(REPO), "rev-parse", "--short", ref])
        origin = f"git {ref} ({commit})"
        _build_accelerator(dest / "sharedsock")
    else:
        shutil.copytree(REPO / "sharedsock", dest / "sharedsock",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        commit = _run_text(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
        dirty = _run_text(["git", "-C", str(REPO), "status", "--porcelain", "--", "sharedsock"])
        origin = f"the working tree at the start (HEAD {commit}" + (
            ", with uncommitted changes in sharedsock/)" if dirty else ", clean)")
    digest = hashlib.sha256()
    for path in sorted((dest / "sharedsock").rglob("*.py")):
        digest.update(path.relative_to(dest).as_posix().encode() + b"\0" + path.read_bytes())
    return dest, f"{origin}, sha256 of its .py files {digest.hexdigest()[:12]}, {_accelerator(dest)}"


def _build_accelerator(package: Path) -> None:
    """Build a git ref's C sources next to its Python files, as its own install would.

    Without its own build, ``import sharedsock._speedups`` from the copy falls through to
    the editable install's finder, which hands it the working tree's build: one built
    from other sources, which the copy then refuses (or, worse, half uses).
    """
    import sysconfig

    sources = sorted(str(path) for path in package.glob("_*.c"))
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if not sources or compiler is None:
        return
    target = package / ("_speedups" + sysconfig.get_config_var("EXT_SUFFIX"))
    build = subprocess.run([compiler, "-shared", "-fPIC", "-O3", "-DNDEBUG",
                            f"-I{sysconfig.get_paths()['include']}", *sources, "-o", str(target)],
                           capture_output=True, text=True)
    if build.returncode != 0:
        raise SystemExit(f"bench: cannot build the accelerator of {package}: {build.stderr[-500:]}")


def _accelerator(src: Path) -> str:
    """Whether the frozen copy runs with the compiled accelerator (built for a git ref)."""
    code = ("import sharedsock, sharedsock.speedups as s; "
            "print(sharedsock.__file__); print(s.describe())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(src)), cwd=str(src)).stdout.splitlines()
    if not out or not out[0].startswith(str(src)):
        raise SystemExit(f"bench: the frozen sharedsock in {src} is not the one imported: {out}")
    return out[1]


def _gunicorn_sync(sc, app, port, workers, threads, tmp) -> Launch:
    argv = [_venv_bin("gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--worker-class", "sync", app]
    return Launch(argv, APPS, _app_env(), r"Booting worker with pid: (\d+)", workers)


def _gunicorn_gthread(sc, app, port, workers, threads, tmp) -> Launch:
    argv = [_venv_bin("gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--worker-class", "gthread", "--threads", str(threads), app]
    return Launch(argv, APPS, _app_env(), r"Booting worker with pid: (\d+)", workers)


def _waitress(sc, app, port, workers, threads, tmp) -> Launch:
    # waitress is one process: it gets the threads all workers of the others have together.
    argv = [_venv_bin("waitress-serve"), f"--listen=127.0.0.1:{port}",
            f"--threads={threads * workers}", app]
    return Launch(argv, APPS, _app_env())


def _granian(sc, app, port, workers, threads, tmp) -> Launch:
    argv = [_venv_bin("granian"), "--interface", "wsgi", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--blocking-threads", str(threads), app]
    return Launch(argv, APPS, _app_env(), r"(?i)Spawning worker-\d+ with pid: (\d+)", workers)


NGINX_CONF = """\
worker_processes {workers};
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port} backlog=2048;
        location / {{ return 200 "Hello, World!\\n"; }}
    }}
}}
"""


def _nginx(sc, app, port, workers, threads, tmp) -> Launch:
    conf_dir = Path(tempfile.mkdtemp(prefix="nginx-", dir=tmp))
    conf = conf_dir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(workers=workers, tmp=conf_dir, port=port))
    argv = [_nginx_binary() or "nginx", "-p", str(conf_dir), "-c", str(conf)]
    return Launch(argv, conf_dir, dict(os.environ))


SERVERS: dict[str, ServerKind] = {s.name: s for s in [
    ServerKind("sharedsock", False, True, _sharedsock, "this project, from the current interpreter"),
    ServerKind("sharedsock-metrics", False, True, _sharedsock_metrics,
               "sharedsock with --metrics-bind (request metrics on): not run by default; "
               "sharedsock / sharedsock-metrics - 1 is what counting costs"),
    ServerKind("sharedsock-base", False, True, _sharedsock_base,
               "sharedsock from --baseline-ref, interleaved with the working tree's: an A/B of a change"),
    ServerKind("gunicorn-sync", True, True, _gunicorn_sync, "gunicorn --worker-class sync (no threads, no keep-alive)"),
    ServerKind("gunicorn-gthread", True, True, _gunicorn_gthread, "gunicorn --worker-class gthread --threads T"),
    ServerKind("waitress", True, False, _waitress, "waitress-serve --threads T x workers (one process)"),
    ServerKind("granian", True, True, _granian, "granian --interface wsgi --blocking-threads T"),
    ServerKind("nginx", False, True, _nginx, "nginx `return 200` (hello scenarios only: the ceiling)"),
]}


DEFAULT_SERVERS = [name for name in SERVERS if name not in ("sharedsock-metrics", "sharedsock-base")]


def applies(server: ServerKind, scenario: Scenario) -> bool:
    return scenario.nginx if server.name == "nginx" else True

# --------------------------------------------------------------------------
# Tools


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _apt_install(package: str) -> bool:
    if shutil.which("apt-get") is None:
        log(f"apt-get not found; cannot install {package}")
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", package]
    log(f"installing {package}: {' '.join(cmd)}")
    if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT).returncode == 0:
        return True
    log("install failed; running apt-get update and trying again")
    subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.STDOUT).returncode == 0


def ensure_wrk() -> str | None:
    found = shutil.which("wrk")
    if found is None and _apt_install("wrk"):
        found = shutil.which("wrk")
    return found


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


def ensure_nginx() -> str | None:
    found = _nginx_binary()
    if found is None and _apt_install("nginx"):
        found = _nginx_binary()
    return found


def _framework_pins() -> list[str]:
    """The peers must run the very Flask/Django code sharedsock runs."""
    from importlib import metadata
    pins = []
    for name in ("flask", "werkzeug", "jinja2", "markupsafe", "itsdangerous", "blinker", "click",
                 "django", "asgiref", "sqlparse"):
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return pins


def ensure_venv(extra: list[str] = ()) -> bool:
    """benchmarks/.venv with the peers; reinstalled only when the wanted set changes."""
    wanted = sorted(_read_requirements() + _framework_pins() + list(extra))
    marker = VENV / ".bench-installed"
    python = VENV / "bin" / "python"
    if python.exists() and marker.exists() and json.loads(marker.read_text()) == wanted:
        return True
    if not python.exists():
        log(f"creating {VENV.relative_to(REPO)} with {sys.executable}")
        if subprocess.run([sys.executable, "-m", "venv", str(VENV)]).returncode != 0:
            return False
    log("installing into the bench venv: " + " ".join(wanted))
    proc = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                           *wanted])
    if proc.returncode != 0:
        return False
    marker.write_text(json.dumps(wanted))
    return True


def _read_requirements() -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    return [line for line in lines if line]


def venv_python() -> str | None:
    python = VENV / "bin" / "python"
    return str(python) if python.exists() else None

# --------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def memory_kib(root: int) -> tuple[int, int, int]:
    """(RSS, PSS, number of processes) summed over ``root`` and its descendants."""
    rss = pss = count = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
                        count += 1
                        break
        except OSError:
            continue
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                        break
        except OSError:
            pass
    return rss, pss, count


class RunningServer:
    def __init__(self, kind: ServerKind, launch: Launch, port: int, log_path: Path,
                 cpu: int | None) -> None:
        self.kind = kind
        self.launch = launch
        self.port = port
        self.log_path = log_path
        argv = list(launch.argv)
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv  # taskset execs: same pid, same group
        self.argv = argv
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=str(launch.cwd), env=launch.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def worker_pids(self) -> list[int]:
        if not self.launch.ready_pattern:
            return []
        return [int(m.group(1)) for m in re.finditer(self.launch.ready_pattern, self.log_text())]

    def wait_ready(self, scenario: Scenario | None, path: str = "/", method: str = "GET",
                   check: Callable[[bytes], str | None] | None = None) -> None:
        deadline = time.monotonic() + READY_DEADLINE
        last = "no answer yet"
        if scenario is not None:
            path, method, check = scenario.path, scenario.method, scenario.check
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind.name} exited with {self.proc.returncode}:\n"
                                   + self.log_text()[-2000:])
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind.name} not ready after {READY_DEADLINE:.0f}s ({last}):\n"
                                   + self.log_text()[-2000:])
            booted = len(self.worker_pids()) >= self.launch.ready_count
            if booted:
                try:
                    status, body = http_request(self.port, method, path)
                except OSError as exc:
                    last = str(exc)
                else:
                    problem = f"status {status}" if status != 200 else (check(body) if check else None)
                    if problem is None:
                        return
                    raise RuntimeError(f"{self.kind.name} answered {method} {path} wrongly: {problem}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of the group we started
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            log(f"warning: {self.kind.name} (pid {self.proc.pid}) did not exit")
        self._log.close()
        if self.launch.cleanup:
            self.launch.cleanup()


def http_request(port: int, method: str, path: str, timeout: float = 5) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        body = BODY_64K if method == "POST" else None
        headers = {"Content-Type": "application/octet-stream"} if body else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()

# --------------------------------------------------------------------------
# wrk


def lua_script(scenario_lua: str | None, tmp: Path) -> Path:
    parts = []
    if scenario_lua:
        parts.append((LUA / scenario_lua).read_text())
    parts.append((LUA / "report.lua").read_text())
    path = tmp / f"wrk-{scenario_lua or 'plain'}"
    path = path.with_suffix(".lua")
    path.write_text("\n".join(parts))
    return path


def wrk_command(wrk: str, port: int, path: str, duration: int, connections: int, threads: int,
                script: Path, close: bool, cpu: int | None) -> list[str]:
    cmd = [] if cpu is None else ["taskset", "-c", str(cpu)]
    cmd += [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", WRK_TIMEOUT,
            "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd += ["-s", str(script), f"http://127.0.0.1:{port}{path}"]
    return cmd


def run_wrk(cmd: list[str], duration: int) -> tuple[dict | None, str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    out = proc.stdout + proc.stderr
    found = None
    for line in out.splitlines():
        if line.startswith("WRKJSON "):
            found = json.loads(line[8:])
        elif line.startswith("PIDJSON ") and found is not None:
            found["pids"] = json.loads(line[8:])
    return found, out


def display_cmd(cmd: list[str]) -> str:
    shown = []
    cmd = [re.sub(r"/tmp/sharedsock-bench-[^/\s]+", "<tmp>", part) for part in cmd]
    for part in cmd:
        if part == shutil.which("wrk"):
            part = "wrk"
        for root, name in ((str(REPO) + "/", ""), (sys.executable, "python")):
            if part == root.rstrip("/") or part.startswith(root):
                part = name + part[len(root):] if name else part[len(root):]
        shown.append(part)
    return shlex.join(shown)

# --------------------------------------------------------------------------
# Measuring


@dataclass
class Context:
    args: argparse.Namespace
    wrk: str
    tmp: Path
    raw: Path
    server_cpu: int | None
    wrk_cpu: int | None
    wrk_threads: int
    workers: int
    runs: list[dict] = field(default_factory=list)
    fairness: list[dict] = field(default_factory=list)
    baselines: list[dict] = field(default_factory=list)
    accelerator: str = ""


def start_profile(ctx: Context, server: RunningServer, label: str) -> tuple[subprocess.Popen, Path] | None:
    """py-spy on the (first) worker for the measured run; non-blocking sampling, so it barely slows it."""
    pids = server.worker_pids()
    spy = _venv_bin("py-spy")
    if not pids or not os.path.exists(spy):
        log(f"  {label}: no profile ({'py-spy missing' if pids else 'no worker pid'})")
        return None
    svg = ctx.raw / f"{label}.flame.svg"
    cmd = [spy, "record", "--pid", str(pids[0]), "--duration", str(ctx.args.duration), "--rate", "250",
           "--nonblocking", "--format", "flamegraph", "--output", str(svg)]
    if ctx.wrk_cpu is not None:
        cmd = ["taskset", "-c", str(ctx.wrk_cpu)] + cmd  # never on the server's core
    errors = open(ctx.raw / f"{label}.py-spy.txt", "wb")
    return subprocess.Popen(cmd, stdout=errors, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL), svg


def finish_profile(started: tuple[subprocess.Popen, Path] | None, record: dict, raw: Path) -> None:
    if started is None:
        return
    proc, svg = started
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if svg.exists():
        record["profile"] = os.path.relpath(svg, raw.parent.parent)


def accelerator_state(source: Path | None) -> str:
    """Whether the measured sharedsock had compiled code on its import path, and whether it was forced off."""
    root = (source or REPO) / "sharedsock"
    compiled = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.so"))
    if not compiled:
        return "none: pure Python (no compiled module in sharedsock/)"
    forced = os.environ.get("SHAREDSOCK_PURE_PYTHON") == "1"
    return ("pure Python forced by SHAREDSOCK_PURE_PYTHON=1; built: " if forced else "compiled: ") \
        + ", ".join(compiled)


class Probe:
    """One fresh client in the middle of a run: is a newcomer served while others keep the
    server busy? Runs in a thread of this process; bounded by ``timeout``."""

    def __init__(self, port: int, scenario: Scenario, delay: float, timeout: float) -> None:
        self.port, self.scenario, self.delay, self.timeout = port, scenario, delay, timeout
        self.latency: float | None = None
        self.problem: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        time.sleep(self.delay)
        sc = self.scenario
        started = time.monotonic()
        try:
            status, body = http_request(self.port, sc.method, sc.path, timeout=self.timeout)
        except OSError as exc:
            self.problem = f"no answer within {self.timeout:.0f} s" if isinstance(exc, TimeoutError) \
                else f"{type(exc).__name__}: {exc}"
            return
        self.answered_at = time.monotonic()
        self.latency = (self.answered_at - started) * 1000
        if status != 200 or sc.check(body):
            self.problem = f"status {status}"

    def result(self, load_ends: float) -> tuple[float | None, str | None]:
        self.thread.join(self.timeout + self.delay + 5)
        if self.latency is not None and self.problem is None and self.answered_at > load_ends \
                and self.latency > 500:
            self.problem = f"answered only after the load stopped ({self.latency:,.0f} ms)"
        return self.latency, self.problem


def measure(ctx: Context, rnd: int, scenario: Scenario, kind: ServerKind) -> dict:
    args = ctx.args
    threads = 1 if kind.name == "gunicorn-sync" else scenario.threads
    port = free_port()
    launch = kind.build(scenario, scenario.app, port, ctx.workers, threads, ctx.tmp)
    label = f"r{rnd}-{scenario.name}-{kind.name}"
    record: dict[str, Any] = {"round": rnd, "scenario": scenario.name, "base": base_name(scenario.name),
                              "server": kind.name,
                              "workers": ctx.workers, "threads": threads,
                              "loadavg_before": os.getloadavg()[0]}
    if kind.name == "sharedsock":
        record["accelerator"] = ctx.accelerator
    script = lua_script(scenario.lua, ctx.tmp)
    server = RunningServer(kind, launch, port, ctx.raw / f"{label}.server.log", ctx.server_cpu)
    record["command"] = display_cmd(server.argv)
    cmd = wrk_command(ctx.wrk, port, scenario.path, args.duration, scenario.connections,
                      ctx.wrk_threads, script, scenario.close, ctx.wrk_cpu)
    record["wrk_command"] = display_cmd(cmd).replace(str(script), f"<{scenario.lua or 'report.lua'}>")
    try:
        server.wait_ready(scenario)
        if args.warmup:
            warm = wrk_command(ctx.wrk, port, scenario.path, args.warmup, scenario.connections,
                               ctx.wrk_threads, script, scenario.close, ctx.wrk_cpu)
            run_wrk(warm, args.warmup)
        probe = Probe(port, scenario, delay=args.duration / 2, timeout=args.duration / 2 + 5)
        profile = start_profile(ctx, server, label) if args.profile and kind.name == "sharedsock" else None
        load_ends = time.monotonic() + args.duration
        result, out = run_wrk(cmd, args.duration)
        finish_profile(profile, record, ctx.raw)
        record["rss_kib"], record["pss_kib"], record["processes"] = memory_kib(server.proc.pid)
        record["probe_ms"], record["probe_problem"] = probe.result(load_ends)
        (ctx.raw / f"{label}.wrk.txt").write_text(out)
        if result is None:
            raise RuntimeError(f"wrk printed no result:\n{out[-2000:]}")
        if server.proc.poll() is not None:
            raise RuntimeError(f"{kind.name} died during the run:\n{server.log_text()[-2000:]}")
        seconds = result["duration_us"] / 1e6
        good = result["requests"] - result["status"]
        record.update({
            "rps": good / seconds if seconds else 0.0,
            "requests": result["requests"],
            "seconds": seconds,
            "errors": {k: result[k] for k in ("connect", "read", "write", "timeout", "status")},
            "error_total": sum(result[k] for k in ("connect", "read", "write", "timeout", "status")),
            "p50_ms": result["p50_us"] / 1000, "p90_ms": result["p90_us"] / 1000,
            "p99_ms": result["p99_us"] / 1000, "max_ms": result["max_us"] / 1000,
            "mb_per_s": result["bytes"] / seconds / 1e6 if seconds else 0.0,
            # Little's law: connections that had a request in flight on average. A closed-loop
            # client always has one per connection, so this falls short of the connection count
            # only when some connections were not served at all (or wrk itself was the limit).
            "served_connections": result["requests"] / seconds * result["mean_us"] / 1e6 if seconds else 0.0,
        })
    except Exception as exc:
        record["failure"] = str(exc).strip()
        log(f"  {label}: FAILED: {str(exc).splitlines()[0] if str(exc) else exc!r}")
    finally:
        server.stop()
    record["loadavg_after"] = os.getloadavg()[0]
    if "rps" in record:
        log(f"  {label}: {record['rps']:,.0f} req/s  p50 {record['p50_ms']:.2f} ms  "
            f"p99 {record['p99_ms']:.2f} ms  errors {record['error_total']}  "
            f"RSS {record['rss_kib'] / 1024:.1f} MiB  served "
            f"{min(record['served_connections'], scenario.connections):.0f}/"
            f"{scenario.connections}  probe "
            + (record["probe_problem"] or f"{record['probe_ms']:.0f} ms"))
    return record


SLEEP_LOOP = """
import sys, threading, time
seconds, threads = float(sys.argv[1]), int(sys.argv[2])
counts = [0] * threads
stop = time.monotonic() + seconds
def loop(i):
    while time.monotonic() < stop:
        time.sleep(0.010)
        counts[i] += 1
pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
for t in pool: t.start()
for t in pool: t.join()
print(sum(counts) / seconds)
"""


def sleep_baseline(ctx: Context, rnd: int, threads: int) -> dict:
    """What `db-10ms` could reach with no server at all: threads doing nothing but sleeping
    10 ms in a loop, on the servers' CPU. time.sleep overshoots, so this is below the ideal."""
    cmd = [] if ctx.server_cpu is None else ["taskset", "-c", str(ctx.server_cpu)]
    cmd += [sys.executable, "-c", SLEEP_LOOP, str(ctx.args.duration), str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=ctx.args.duration + 30)
    try:
        rate = float(proc.stdout.strip())
    except ValueError:
        return {"round": rnd, "threads": threads, "failure": proc.stderr[-500:]}
    log(f"  r{rnd}-db-10ms-baseline: {threads} bare Python threads sleeping 10 ms in a loop: {rate:.0f}/s")
    return {"round": rnd, "threads": threads, "rate": rate}


def measure_fairness(ctx: Context, rnd: int, kind: ServerKind, workers: int) -> list[dict]:
    args = ctx.args
    port = free_port()
    launch = kind.build(None, "wsgi_basic:pid", port, workers, 1, ctx.tmp)
    label = f"r{rnd}-fairness-{kind.name}-w{workers}"
    server = RunningServer(kind, launch, port, ctx.raw / f"{label}.server.log", None)
    script = lua_script("pidcount.lua", ctx.tmp)
    records = []
    try:
        server.wait_ready(None, "/", "GET", _expect(pattern=rb"pid=\d+"))
        if args.warmup:
            run_wrk(wrk_command(ctx.wrk, port, "/", args.warmup, 16, 2, script, True, None), args.warmup)
        for conc in args.fairness_concurrency:
            cmd = wrk_command(ctx.wrk, port, "/", args.duration, conc, min(2, conc), script, True, None)
            result, out = run_wrk(cmd, args.duration)
            (ctx.raw / f"{label}-c{conc}.wrk.txt").write_text(out)
            record: dict[str, Any] = {"round": rnd, "server": kind.name, "workers": workers,
                                      "concurrency": conc, "command": display_cmd(server.argv),
                                      "wrk_command": display_cmd(cmd).replace(str(script), "<pidcount.lua>")}
            if result is None or "pids" not in result:
                record["failure"] = f"wrk printed no pid counts:\n{out[-1500:]}"
                records.append(record)
                continue
            counts = {int(p): n for p, n in result["pids"]["counts"].items()}
            booted = server.worker_pids()
            for pid in booted[-workers:]:  # a worker that served nothing still counts, as 0
                counts.setdefault(pid, 0)
            values = sorted(counts.values(), reverse=True)
            while len(values) < workers:
                values.append(0)
            total = sum(values)
            record.update({
                "counts": {str(k): v for k, v in sorted(counts.items())},
                "requests": total,
                "shares": [v / total for v in values] if total else [],
                "max_min": (values[0] / values[-1]) if values[-1] else None,
                "errors": result["connect"] + result["read"] + result["write"] + result["timeout"]
                + result["status"],
                "unparsed": result["pids"]["unparsed"],
                "extra_pids": max(0, len(counts) - workers),
            })
            ratio = "inf (a worker served nothing)" if record["max_min"] is None else f"{record['max_min']:.2f}"
            log(f"  {label} c={conc}: shares {', '.join(f'{s:.1%}' for s in record['shares'])}"
                f"  max/min {ratio}")
            records.append(record)
    except Exception as exc:
        records.append({"round": rnd, "server": kind.name, "workers": workers,
                        "failure": str(exc).strip()})
        log(f"  {label}: FAILED: {str(exc).splitlines()[0]}")
    finally:
        server.stop()
    return records

# --------------------------------------------------------------------------
# Summaries and targets


def _stats(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs: list[dict], fairness: list[dict], baselines: list[dict] = ()) -> dict:
    ok = [r for r in runs if "rps" in r]
    cells: dict[str, dict[str, dict]] = {}
    for scenario in dict.fromkeys(r["scenario"] for r in runs):
        for server in dict.fromkeys(r["server"] for r in runs if r["scenario"] == scenario):
            mine = [r for r in ok if r["scenario"] == scenario and r["server"] == server]
            failed = [r for r in runs if r["scenario"] == scenario and r["server"] == server
                      and "failure" in r]
            cells.setdefault(scenario, {})[server] = {
                "rps": _stats([r["rps"] for r in mine]),
                "p50_ms": _stats([r["p50_ms"] for r in mine]),
                "p99_ms": _stats([r["p99_ms"] for r in mine]),
                "rss_mib": _stats([r["rss_kib"] / 1024 for r in mine]),
                "pss_mib": _stats([r["pss_kib"] / 1024 for r in mine]),
                "errors": sum(r["error_total"] for r in mine),
                "requests": sum(r["requests"] for r in mine),
                "failed_runs": len(failed),
                "probe_ms": _stats([r.get("probe_ms") for r in mine]),
                "probe_problems": [r["probe_problem"] for r in mine if r.get("probe_problem")],
                "served_connections": _stats([r.get("served_connections") for r in mine]),
                "connections": scenario_named(scenario).connections,
                "threads": mine[0]["threads"] if mine else None,
            }
    ratios: dict[str, dict[str, dict]] = {}
    for scenario, servers in cells.items():
        if "sharedsock" not in servers:
            continue
        for peer in servers:
            if peer == "sharedsock":
                continue
            per_round = []
            for rnd in sorted({r["round"] for r in ok}):
                a = [r["rps"] for r in ok if r["round"] == rnd and r["scenario"] == scenario
                     and r["server"] == "sharedsock"]
                b = [r["rps"] for r in ok if r["round"] == rnd and r["scenario"] == scenario
                     and r["server"] == peer]
                if a and b and b[0] > 0:
                    per_round.append(a[0] / b[0])
            stats = _stats(per_round)
            if stats:
                ratios.setdefault(scenario, {})[peer] = stats
    # sharedsock with N threads against itself with 1, in the same round: the cost of the pool.
    thread_ratios: dict[str, dict] = {}
    for label in cells:
        if scenario_named(label).threads == 1 or "sharedsock" not in cells[label]:
            continue
        one = f"{base_name(label)}-t1"
        if one == label or one not in cells:
            continue
        per_round = []
        for rnd in sorted({r["round"] for r in ok}):
            a = [r["rps"] for r in ok if r["round"] == rnd and r["scenario"] == label
                 and r["server"] == "sharedsock"]
            b = [r["rps"] for r in ok if r["round"] == rnd and r["scenario"] == one
                 and r["server"] == "sharedsock"]
            if a and b and b[0] > 0:
                per_round.append(a[0] / b[0])
        stats = _stats(per_round)
        if stats:
            thread_ratios[label] = stats
    fair: dict[str, dict] = {}
    for rec in fairness:
        if "failure" in rec:
            continue
        key = f"{rec['server']}|{rec['workers']}|{rec['concurrency']}"
        entry = fair.setdefault(key, {"server": rec["server"], "workers": rec["workers"],
                                      "concurrency": rec["concurrency"], "max_min": [], "inf": 0,
                                      "max_share": []})
        if rec["max_min"] is None:
            entry["inf"] += 1
        else:
            entry["max_min"].append(rec["max_min"])
        if rec["shares"]:
            entry["max_share"].append(rec["shares"][0])
    for entry in fair.values():
        entry["max_min_stats"] = _stats(entry["max_min"])
        entry["max_share_stats"] = _stats(entry["max_share"])
    baseline = _stats([b.get("rate") for b in baselines])
    return {"cells": cells, "ratios": ratios, "thread_ratios": thread_ratios,
            "fairness": list(fair.values()), "sleep_baseline": baseline}


def _ratio_target(summary, tid, text, scenario, peer, minimum) -> dict:
    stats = summary["ratios"].get(scenario, {}).get(peer)
    target = {"id": tid, "target": text, "threshold": minimum}
    if stats is None:
        target.update(status="n/a", measured="not measured (needs sharedsock and "
                                              f"{peer} in {scenario})")
    else:
        target.update(status="pass" if stats["median"] >= minimum else "FAIL", value=stats["median"],
                      measured=f"{stats['median']:.2f}x (rounds: {stats['min']:.2f}-{stats['max']:.2f})")
    return target


def _suffix(label: str) -> str:
    return f"-t{scenario_named(label).threads}"


def _labels(cells: dict, base: str) -> list[str]:
    """The measured thread variants of a scenario, fewest threads first."""
    found = [label for label in cells if base_name(label) == base]
    return sorted(found, key=lambda label: scenario_named(label).threads)


def evaluate_targets(summary: dict, workers: int) -> list[dict]:
    """The speed issue's targets, for each thread setting measured (ids end in -tN)."""
    cells = summary["cells"]
    targets = []
    for label in _labels(cells, "hello-keepalive"):
        targets.append(_ratio_target(summary, f"T1{_suffix(label)}", f"{label} >= 3.5x gunicorn sync",
                                     label, "gunicorn-sync", 3.5))
        targets.append(_ratio_target(summary, f"T2{_suffix(label)}", f"{label} >= 2x waitress", label,
                                     "waitress", 2.0))
    for base, text, minimum in (("hello-keepalive", "hello keep-alive", 1.2), ("flask-json", "Flask JSON", 1.1),
                                ("django-json", "Django JSON", 1.1), ("post-64kib", "64 KiB POST", 1.0)):
        for label in _labels(cells, base):
            threads = scenario_named(label).threads
            targets.append(_ratio_target(summary, f"G-{label}", f"{text}, {threads} thread(s) >= "
                                         f"{minimum}x granian --blocking-threads {threads}", label, "granian",
                                         minimum))
    for label in _labels(cells, "hello-close"):
        targets.append(_ratio_target(summary, f"T3{_suffix(label)}", f"{label} (new connection per request) "
                                     ">= 0.95x nginx", label, "nginx", 0.95))
    for base in ("hello-keepalive", "flask-json", "django-json"):
        for label in _labels(cells, base):
            if scenario_named(label).threads == 1:
                continue
            stats = summary.get("thread_ratios", {}).get(label)
            target = {"id": f"P1-{label}", "threshold": 0.95,
                      "target": f"{label} >= 0.95x sharedsock's own {base}-t1 (the cost of the pool)"}
            if stats is None:
                target.update(status="n/a", measured=f"not measured (needs sharedsock in {label} and {base}-t1)")
            else:
                target.update(status="pass" if stats["median"] >= 0.95 else "FAIL", value=stats["median"],
                              measured=f"{stats['median']:.2f}x (rounds: {stats['min']:.2f}-{stats['max']:.2f})")
            targets.append(target)
    slower = []
    compared = 0
    for label, servers in cells.items():
        mine, theirs = (servers.get("sharedsock") or {}).get("p99_ms"), (servers.get("granian") or {}).get("p99_ms")
        if mine and theirs:
            compared += 1
            if mine["median"] > theirs["median"]:
                slower.append(f"{label} {mine['median']:.2f} vs {theirs['median']:.2f} ms")
    targets.append({"id": "P2", "target": "p99 latency no worse than granian's, every scenario and thread setting",
                    "status": ("FAIL" if slower else "pass") if compared else "n/a",
                    "measured": ("worse in " + "; ".join(slower)) if slower else
                                (f"no worse in {compared} scenario(s)" if compared else "not measured")})
    for label in _labels(cells, "db-10ms"):
        targets.append(_ratio_target(summary, "T6a", f"10 ms DB, {scenario_named(label).threads} threads >= 1.0x "
                                     "granian", label, "granian", 1.0))
        db = cells[label].get("sharedsock", {}).get("rps")
        base = summary.get("sleep_baseline")
        t6 = {"id": "T6b", "target": "10 ms DB >= 0.97x the bare-threads ceiling (threads that only sleep 10 ms)",
              "threshold": 0.97}
        if db and base:
            share = db["median"] / base["median"]
            t6.update(status="pass" if share >= 0.97 else "FAIL", value=share,
                      measured=f"{db['median']:.0f} req/s vs {base['median']:.0f}/s bare threads = {share:.2f}x "
                               f"(ideal {workers * scenario_named(label).threads * 100} req/s)")
        else:
            t6.update(status="n/a", measured="not measured (needs sharedsock in db-10ms and the baseline)")
        targets.append(t6)
    for label in _labels(cells, "big-1mib"):
        targets.append(_ratio_target(summary, f"T7{_suffix(label)}", f"{label} >= gunicorn gthread", label,
                                     "gunicorn-gthread", 1.0))
    for label in _labels(cells, "hello-keepalive"):
        stats = summary["ratios"].get(label, {}).get("sharedsock-metrics")
        if stats is not None:
            cost = stats["median"] - 1
            targets.append({"id": f"M1{_suffix(label)}", "threshold": 0.03,
                            "target": f"{label}: request metrics (--metrics-bind) cost < 3%",
                            "status": "pass" if cost < 0.03 else "FAIL", "value": cost,
                            "measured": f"{cost:+.1%} (sharedsock / sharedsock-metrics per round: "
                                        f"{stats['min']:.3f}-{stats['max']:.3f})"})
    t8 = {"id": "T8", "target": "fairness, 2 workers, new connections: max/min <= 1.25 at every "
                                "concurrency", "threshold": 1.25}
    mine = [e for e in summary["fairness"] if e["server"] == "sharedsock" and e["workers"] == 2]
    if not mine:
        t8.update(status="n/a", measured="not measured (needs sharedsock in the fairness scenario)")
    else:
        worst, where = 0.0, ""
        for e in mine:
            value = float("inf") if e["inf"] or not e["max_min_stats"] else e["max_min_stats"]["median"]
            if value >= worst:
                worst, where = value, f"c={e['concurrency']}"
        text = "inf (a worker served nothing)" if worst == float("inf") else f"{worst:.2f}"
        t8.update(status="pass" if worst <= 1.25 else "FAIL", value=None if worst == float("inf") else worst,
                  measured=f"worst median max/min {text} at {where}")
    targets.append(t8)
    t9 = {"id": "T9", "target": "memory: total RSS <= gunicorn sync's (same scenario, every scenario)",
          "threshold": 1.0}
    worst, where = None, ""
    for scenario, servers in cells.items():
        a = (servers.get("sharedsock") or {}).get("rss_mib")
        b = (servers.get("gunicorn-sync") or {}).get("rss_mib")
        if a and b:
            ratio = a["median"] / b["median"]
            if worst is None or ratio > worst:
                worst, where = ratio, f"{scenario}: {a['median']:.1f} vs {b['median']:.1f} MiB"
    if worst is None:
        t9.update(status="n/a", measured="not measured (needs sharedsock and gunicorn-sync)")
    else:
        t9.update(status="pass" if worst <= 1.0 else "FAIL", value=worst,
                  measured=f"worst ratio {worst:.2f}x ({where})")
    targets.append(t9)
    starved = []
    for scenario, servers in cells.items():
        c = servers.get("sharedsock")
        if not c:
            continue
        limit = max(1000.0, 3 * c["p99_ms"]["max"]) if c["p99_ms"] else 1000.0
        if c["probe_problems"] or (c["probe_ms"] and c["probe_ms"]["max"] > limit):
            worst = c["probe_problems"][0] if c["probe_problems"] else f"{c['probe_ms']['max']:.0f} ms"
            starved.append(f"{scenario} ({worst})")
    if any("sharedsock" in s for s in cells.values()):
        targets.append({"id": "S2", "target": "(sanity) sharedsock serves every client under load: a fresh "
                        "client mid-run is answered within max(1 s, 3x the run's p99)",
                        "status": "FAIL" if starved else "pass",
                        "measured": "starved in " + "; ".join(starved) if starved else "no starvation seen"})
    errors = sum((s.get("sharedsock") or {}).get("errors", 0) for s in cells.values())
    failed = sum((s.get("sharedsock") or {}).get("failed_runs", 0) for s in cells.values())
    measured_any = any("sharedsock" in s for s in cells.values())
    targets.append({"id": "S1", "target": "(sanity) sharedsock: no errors, no failed runs",
                    "status": ("pass" if not errors and not failed else "FAIL") if measured_any else "n/a",
                    "measured": f"{errors} errors, {failed} failed runs" if measured_any else "not measured"})
    return targets

# --------------------------------------------------------------------------
# Report


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "cores_available": len(os.sched_getaffinity(0)),
            "memory": mem, "kernel": platform.release(), "os": _os_name(),
            "python": platform.python_version(), "python_impl": platform.python_implementation()}


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def _run_text(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (proc.stdout + proc.stderr).strip()


def versions(wrk: str, servers: list[str]) -> dict:
    from importlib import metadata
    out = {"sharedsock": metadata.version("sharedsock"), "httptools": metadata.version("httptools")}
    commit = _run_text(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _run_text(["git", "-C", str(REPO), "status", "--porcelain", "--", "sharedsock"])
    out["sharedsock_commit"] = commit + (" (sharedsock/ has uncommitted changes)" if dirty else "")
    for name in ("flask", "django"):
        try:
            out[f"{name} (sharedsock env)"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    out["wrk"] = _run_text([wrk, "-v"]).splitlines()[0] if wrk else ""
    python = venv_python()
    if python and any(SERVERS[s].peer for s in servers):
        code = ("import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in "
                "['gunicorn', 'waitress', 'granian', 'flask', 'django', 'matplotlib']}))")
        try:
            for name, version in json.loads(_run_text([python, "-c", code])).items():
                key = f"{name} (bench venv)" if name in ("flask", "django") else name
                out[key] = version
        except ValueError:
            pass
    if "nginx" in servers and _nginx_binary():
        out["nginx"] = _run_text([_nginx_binary(), "-v"]).replace("nginx version: ", "")
    return out


def _fmt(stats: dict | None, digits: int = 0, unit: str = "") -> str:
    if not stats:
        return "-"
    fmt = f"{{:,.{digits}f}}"
    if stats["n"] == 1:
        return fmt.format(stats["median"]) + unit
    return f"{fmt.format(stats['median'])}{unit} ({fmt.format(stats['min'])}-{fmt.format(stats['max'])})"


def render_markdown(data: dict, chart: str | None) -> str:
    meta, summary = data["meta"], data["summary"]
    cells, ratios = summary["cells"], summary["ratios"]
    servers = [s for s in meta["servers"] if any(s in c for c in cells.values())]
    lines = [f"# sharedsock benchmarks: {meta['mode']} mode", ""]
    lines += [f"Run {meta['started']} to {meta['finished']} (UTC); {meta['rounds']} round(s) of "
              f"{meta['duration']} s per server and scenario after {meta['warmup']} s of warm-up; "
              f"servers interleaved in every round. {meta['mode_text']}", ""]
    if meta.get("note"):
        lines += [f"> **Note:** {meta['note']}", ""]
    lines += [f"Load average (1 min) at start {meta['loadavg_start']:.2f}, at end {meta['loadavg_end']:.2f}.", ""]
    if chart:
        lines += [f"![throughput per scenario]({chart})", ""]
    else:
        lines += ["(No chart: matplotlib lives in benchmarks/.venv, which this run did not need.)", ""]
    if data["targets"]:
        lines += ["## Targets", ""]
        if meta["mode"] != "per-core":
            lines += ["The targets are defined per core; in this mode they are shown for information.", ""]
        lines += ["| | target | measured | result |", "| --- | --- | --- | --- |"]
        for t in data["targets"]:
            lines.append(f"| {t['id']} | {t['target']} | {t['measured']} | {t['status']} |")
        lines.append("")
    if cells:
        lines += ["## Throughput (requests/s)", "",
                  "Median over rounds (min-max). Only responses with a status below 400 count. "
                  "A scenario's `-tN` suffix is its app threads per worker, the same for every server: "
                  "sharedsock `--threads N`, gunicorn gthread `--threads N`, granian `--blocking-threads N`, "
                  "waitress `--threads` N x workers; gunicorn sync has no threads and runs as it is.", ""]
        lines += ["| scenario | " + " | ".join(servers) + " |", "| --- |" + " ---: |" * len(servers)]
        for scenario, row in cells.items():
            lines.append(f"| {scenario} | " + " | ".join(
                _fmt(row[s]["rps"]) if s in row else "" for s in servers) + " |")
        lines.append("")
        peers = [s for s in servers if s != "sharedsock"]
        if ratios and peers:
            lines += ["## sharedsock / peer", "",
                      "Ratio of throughputs measured in the same round, median over rounds (min-max). "
                      "Above 1: sharedsock served more.", ""]
            lines += ["| scenario | " + " | ".join(peers) + " |", "| --- |" + " ---: |" * len(peers)]
            for scenario in cells:
                row = ratios.get(scenario, {})
                lines.append(f"| {scenario} | " + " | ".join(
                    _fmt(row.get(p), 2, "x") if p in row else "" for p in peers) + " |")
            lines.append("")
        lines += ["## Latency (ms): p50 / p99", "", "Medians over rounds, from wrk --latency.", ""]
        lines += ["| scenario | " + " | ".join(servers) + " |", "| --- |" + " ---: |" * len(servers)]
        for scenario, row in cells.items():
            parts = []
            for s in servers:
                c = row.get(s)
                parts.append(f"{c['p50_ms']['median']:.2f} / {c['p99_ms']['median']:.2f}"
                             if c and c["p50_ms"] else "")
            lines.append(f"| {scenario} | " + " | ".join(parts) + " |")
        lines.append("")
        lines += ["## Errors", "", "Socket errors (connect, read, write, timeout) plus responses with "
                  "status >= 400, summed over rounds, out of all requests; failed runs (server did not "
                  "start or answered wrongly) separately.", ""]
        lines += ["| scenario | " + " | ".join(servers) + " |", "| --- |" + " ---: |" * len(servers)]
        for scenario, row in cells.items():
            parts = []
            for s in servers:
                c = row.get(s)
                if not c:
                    parts.append("")
                    continue
                text = f"{c['errors']:,} / {c['requests']:,}"
                if c["failed_runs"]:
                    text += f" ({c['failed_runs']} failed runs)"
                parts.append(text)
            lines.append(f"| {scenario} | " + " | ".join(parts) + " |")
        lines.append("")
        lines += ["## Memory (MiB): total RSS / PSS of the server's process tree", "",
                  "Sampled right after each run; median over rounds. RSS counts pages shared by "
                  "forked workers once per process; PSS divides them among the sharers.", ""]
        lines += ["| scenario | " + " | ".join(servers) + " |", "| --- |" + " ---: |" * len(servers)]
        for scenario, row in cells.items():
            parts = []
            for s in servers:
                c = row.get(s)
                parts.append(f"{c['rss_mib']['median']:.1f} / {c['pss_mib']['median']:.1f}"
                             if c and c["rss_mib"] else "")
            lines.append(f"| {scenario} | " + " | ".join(parts) + " |")
        lines.append("")
        lines += ["## Starvation check", "",
                  "*probe*: one fresh client sends one request halfway through each run, while wrk keeps "
                  "the server busy; its response time in ms (median over rounds, or what went wrong). "
                  "*served*: connections that had a request in flight on average = req/s x mean latency "
                  "(Little's law), capped at the connection count. With keep-alive and wrk's closed loop it "
                  "is close to the connection count unless some connections were never served; it also "
                  "falls short when wrk itself is the bottleneck (very fast servers) and with a new "
                  "connection per request (wrk's connect time is not part of its latency), so read it "
                  "only next to the probe.", ""]
        lines += ["| scenario | " + " | ".join(servers) + " |", "| --- |" + " ---: |" * len(servers)]
        for scenario, row in cells.items():
            parts = []
            for s in servers:
                c = row.get(s)
                if not c or not c["rps"]:
                    parts.append("")
                    continue
                problems = c["probe_problems"]
                probe = (f"{problems[0]}" + (f" (and {len(problems) - 1} more round(s))"
                                             if len(problems) > 1 else "")) if problems else (
                    f"{c['probe_ms']['median']:,.0f} ms" if c["probe_ms"] else "-")
                served = f"{min(c['served_connections']['median'], c['connections']):.0f}/{c['connections']}" \
                    if c["served_connections"] else "-"
                parts.append(f"probe {probe}, served {served}")
            lines.append(f"| {scenario} | " + " | ".join(parts) + " |")
        lines.append("")
        db_label = next(iter(_labels(cells, "db-10ms")), None)
        db = cells.get(db_label) if db_label else None
        if db:
            lines += ["## 10 ms DB call: share of the ideal", "",
                      "Ideal = workers x app threads / 10 ms. gunicorn sync has one thread per worker.", ""]
            base = summary.get("sleep_baseline")
            if base:
                n = next((b["threads"] for b in data.get("baselines", []) if "rate" in b), "")
                lines += [f"For scale: {n} bare Python threads that only sleep 10 ms in a loop, pinned like "
                          f"the servers, manage {_fmt(base)} per second here (time.sleep overshoots), "
                          f"{base['median'] / (int(n or 1) * 100):.1%} of the ideal, with no server at all.", ""]
            lines += ["| server | threads per worker | ideal req/s | measured | share |",
                      "| --- | ---: | ---: | ---: | ---: |"]
            for s in servers:
                c = db.get(s)
                if not c or not c["rps"]:
                    continue
                ideal = meta["workers"] * c["threads"] * 100
                lines.append(f"| {s} | {c['threads']} | {ideal} | {c['rps']['median']:,.0f} | "
                             f"{c['rps']['median'] / ideal:.1%} |")
            lines.append("")
    if summary["fairness"]:
        lines += ["## Fairness: requests per worker, new connection per request", "",
                  "`wsgi_basic:pid` served by N unpinned workers; wrk (lua/pidcount.lua) counts the "
                  "pid in each response. max/min = requests of the busiest worker / the idlest, "
                  "median over rounds (min-max).", ""]
        lines += ["| server | workers | concurrency | max/min | busiest worker's share |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for e in sorted(summary["fairness"], key=lambda e: (e["server"], e["workers"], e["concurrency"])):
            mm = _fmt(e["max_min_stats"], 2)
            if e["inf"]:
                mm += f" ({e['inf']} round(s) with an idle worker: inf)"
            share = e["max_share_stats"]
            lines.append(f"| {e['server']} | {e['workers']} | {e['concurrency']} | {mm} | "
                         f"{share['median']:.1%} |" if share else f"| {e['server']} | {e['workers']} | "
                         f"{e['concurrency']} | {mm} | - |")
        lines.append("")
    profiles = [r for r in data["runs"] if r.get("profile")]
    if profiles:
        lines += ["## Profiles", "", "py-spy flame graphs of the sharedsock worker during the measured runs "
                  "(`--profile`; non-blocking sampling at 250 Hz):", ""]
        lines += [f"- round {r['round']}, {r['scenario']}: `{r['profile']}`" for r in profiles]
        lines.append("")
    lines += ["## Machine", "", "| | |", "| --- | --- |"]
    for k, v in meta["machine"].items():
        lines.append(f"| {k} | {v} |")
    lines += ["", "## Versions", "", "| | |", "| --- | --- |"]
    for k, v in meta["versions"].items():
        lines.append(f"| {k} | {v} |")
    lines += ["", "## Commands", "", "Suite:", "", "```", meta["suite_command"], "```", "",
              "Each server and wrk, as run in round 1 (ports are picked free for each run; paths are "
              "relative to the repository; the app's directory, benchmarks/apps, is the working "
              "directory and PYTHONPATH of every Python server):", ""]
    source = meta["versions"].get("sharedsock_source")
    if source:
        lines += [f"sharedsock ran from a frozen copy of sharedsock/ ({source}), put first on "
                  "PYTHONPATH; nginx's config is `NGINX_CONF` in benchmarks/run.py.", ""]
    seen = set()
    lines.append("```")
    for r in data["runs"] + data["fairness"]:
        if r["round"] != 1 or "command" not in r:
            continue
        key = (r.get("scenario", "fairness"), r["server"], r.get("concurrency"))
        if key in seen:
            continue
        seen.add(key)
        tag = f"{key[0]} / {key[1]}" + (f" / c={key[2]}" if key[2] else "")
        lines += [f"# {tag}", re.sub(r"/tmp/sharedsock-bench-[^/\s]+", "<tmp>", r["command"]),
                  r["wrk_command"]]
    lines += ["```", ""]
    return "\n".join(lines)

# --------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Scenarios: " + ", ".join(ALL_SCENARIOS)
                                + "\nServers: " + ", ".join(SERVERS))
    p.add_argument("--duration", type=int, default=10, help="seconds each measured wrk run lasts (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured wrk before each run (default 2, 0: none)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--threads", default=DEFAULT_THREADS,
                   help="comma-separated app thread counts per worker; every scenario runs at each, side "
                        "by side, against peers with the same count (default 1,4; db-10ms always uses 4)")
    p.add_argument("--profile", action="store_true",
                   help="also record a py-spy flame graph (SVG) of the sharedsock worker during each "
                        "measured run, into the run's raw/ folder (py-spy is installed into "
                        "benchmarks/.venv; sampling costs the profiled runs a little throughput)")
    p.add_argument("--scenarios", default=",".join(ALL_SCENARIOS), help="comma-separated (default: all)")
    p.add_argument("--servers", default=",".join(DEFAULT_SERVERS),
                   help="comma-separated (default: all but sharedsock-metrics)")
    p.add_argument("--mode", choices=("per-core", "all-cores"), default="per-core",
                   help="per-core: 1 worker pinned to one CPU, wrk pinned to another; "
                        "all-cores: N workers and wrk unpinned (default per-core)")
    p.add_argument("--workers", type=int, default=None,
                   help="workers in all-cores mode (default: CPUs available)")
    p.add_argument("--fairness-workers", default=None,
                   help="comma-separated worker counts for the fairness runs (default: 2 and the CPU count)")
    p.add_argument("--fairness-concurrency", default="2,16,64",
                   help="comma-separated wrk connection counts for the fairness runs (default 2,16,64)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                   help="directory for latest.md/.json/.png and raw/ (default benchmarks/results)")
    p.add_argument("--sharedsock-ref", metavar="REF", default=None,
                   help="measure sharedsock/ as of this git commit instead of a copy of the working "
                        "tree taken at the start")
    p.add_argument("--baseline-ref", metavar="REF", default=None,
                   help="also run sharedsock/ as of this git commit as server 'sharedsock-base', in the "
                        "same rounds: the sharedsock / sharedsock-base ratio is a change's A/B")
    p.add_argument("--note", default="", help="a line printed at the top of the report")
    p.add_argument("--setup-only", action="store_true", help="install the tools, then exit")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="measure nothing: rebuild latest.md/.png (and the summary in latest.json) in "
                        "--output from a saved results JSON")
    args = p.parse_args(argv)
    args.scenarios = _list(args.scenarios, ALL_SCENARIOS, "scenario", p)
    args.servers = _list(args.servers, list(SERVERS), "server", p)
    if args.baseline_ref and "sharedsock-base" not in args.servers:
        args.servers.insert(args.servers.index("sharedsock") + 1 if "sharedsock" in args.servers else 0,
                            "sharedsock-base")
    if "sharedsock-base" in args.servers and not args.baseline_ref:
        p.error("server sharedsock-base needs --baseline-ref REF")
    if args.duration < 1 or args.rounds < 1 or args.warmup < 0:
        p.error("--duration and --rounds must be at least 1, --warmup at least 0")
    if args.workers is not None and args.workers < 1:
        p.error("--workers must be at least 1")
    cpus = len(os.sched_getaffinity(0))
    args.fairness_workers = sorted(set(_counts(args.fairness_workers, "--fairness-workers", 2, p))) \
        if args.fairness_workers else sorted({2, cpus})
    args.fairness_concurrency = _counts(args.fairness_concurrency, "--fairness-concurrency", 1, p)
    args.threads = sorted(set(_counts(args.threads, "--threads", 1, p)))
    return args


def _counts(text: str, option: str, least: int, parser) -> list[int]:
    """Parse a comma-separated count list. Fairness compares workers, so it needs 2 or more."""
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        parser.error(f"{option} takes comma-separated integers, got {text!r}")
    if not counts or min(counts) < least:
        skip = (" (to skip fairness, leave it out of --scenarios)"
                if option == "--fairness-workers" else "")
        parser.error(f"{option} values must be at least {least}, got {text!r}{skip}")
    return counts


def _list(text: str, known: list[str], what: str, parser) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    for item in items:
        if item not in known:
            parser.error(f"unknown {what} {item!r}; known: {', '.join(known)}")
    return [k for k in known if k in items]  # canonical order


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        return render_only(args.render.resolve(), args.output.resolve(), args.no_chart)
    started = dt.datetime.now(dt.timezone.utc)
    wrk = ensure_wrk()
    if wrk is None:
        print("benchmarks: wrk is not installed and `apt-get install -y wrk` failed", file=sys.stderr)
        return EXIT_NO_WRK
    servers = list(args.servers)
    scenarios = variants(args.scenarios, args.threads)
    wants_nginx = "nginx" in servers and any(s.nginx for s in scenarios)
    if "nginx" in servers and not wants_nginx:
        servers.remove("nginx")
    if wants_nginx and ensure_nginx() is None:
        log("nginx could not be installed: leaving it out")
        servers.remove("nginx")
    profile = [PY_SPY] if args.profile and "sharedsock" in servers else []
    if (any(SERVERS[s].peer for s in servers) or profile) and not ensure_venv(profile):
        print("benchmarks: could not install the peers into benchmarks/.venv", file=sys.stderr)
        return 2
    if args.setup_only:
        log("setup done")
        return 0

    cpus = sorted(os.sched_getaffinity(0))
    per_core = args.mode == "per-core"
    if per_core:
        server_cpu, wrk_cpu = cpus[0], cpus[1] if len(cpus) > 1 else cpus[0]
        if len(cpus) < 2:
            log("warning: one CPU only: server and wrk share it")
        workers, wrk_threads = 1, 1
        mode_text = (f"Per-core: every server runs 1 worker pinned with `taskset -c {server_cpu}` "
                     f"(its master/arbiter too); wrk runs 1 thread pinned to CPU {wrk_cpu}.")
    else:
        server_cpu = wrk_cpu = None
        workers = args.workers or len(cpus)
        wrk_threads = min(2, len(cpus))
        mode_text = (f"All-cores: every server runs {workers} workers unpinned; wrk runs "
                     f"{wrk_threads} threads on the same machine, unpinned.")
    output = args.output.resolve()
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    raw = output / "raw" / stamp
    raw.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="sharedsock-bench-"))
    ctx = Context(args, wrk, tmp, raw, server_cpu, wrk_cpu, wrk_threads, workers)
    loadavg_start = os.getloadavg()[0]
    versions_start = versions(wrk, servers)
    if "sharedsock" in servers:
        try:
            versions_start["sharedsock_source"] = freeze_sharedsock(tmp, args.sharedsock_ref)
        except (subprocess.CalledProcessError, OSError) as exc:
            print(f"benchmarks: cannot take sharedsock from {args.sharedsock_ref or 'the working tree'}: "
                  f"{exc}", file=sys.stderr)
            shutil.rmtree(tmp, ignore_errors=True)
            return 2
        log(f"sharedsock runs from {versions_start['sharedsock_source']}")
        ctx.accelerator = versions_start["sharedsock_accelerator"] = accelerator_state(SHAREDSOCK_SRC)
    if args.baseline_ref:
        try:
            versions_start["sharedsock_base_source"] = freeze_baseline(tmp, args.baseline_ref)
        except (subprocess.CalledProcessError, OSError) as exc:
            print(f"benchmarks: cannot take sharedsock from {args.baseline_ref}: {exc}", file=sys.stderr)
            shutil.rmtree(tmp, ignore_errors=True)
            return 2
        log(f"sharedsock-base runs from {versions_start['sharedsock_base_source']}")
    try:
        for rnd in range(1, args.rounds + 1):
            log(f"round {rnd}/{args.rounds}")
            for scenario in scenarios:
                if base_name(scenario.name) == "db-10ms":
                    ctx.baselines.append(sleep_baseline(ctx, rnd, scenario.threads * workers))
                # Odd rounds run the servers in the order given, even rounds in reverse, so
                # a server's place in the round (the machine's state after the one before it)
                # does not bias every ratio the same way.
                for name in servers if rnd % 2 else servers[::-1]:
                    kind = SERVERS[name]
                    if applies(kind, scenario):
                        ctx.runs.append(measure(ctx, rnd, scenario, kind))
            if FAIRNESS in args.scenarios:
                for n in args.fairness_workers:
                    for name in servers:
                        if SERVERS[name].multi_process and name != "nginx":
                            ctx.fairness.extend(measure_fairness(ctx, rnd, SERVERS[name], n))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    finished = dt.datetime.now(dt.timezone.utc)
    summary = summarize(ctx.runs, ctx.fairness, ctx.baselines)
    suite = ["python", "benchmarks/run.py"] + (argv if argv is not None else sys.argv[1:])
    data = {
        "meta": {
            "started": started.strftime("%Y-%m-%d %H:%M"), "finished": finished.strftime("%Y-%m-%d %H:%M"),
            "mode": args.mode, "mode_text": mode_text, "workers": workers, "rounds": args.rounds,
            "duration": args.duration, "warmup": args.warmup, "servers": servers,
            "scenarios": args.scenarios, "threads": args.threads, "profile": args.profile,
            "note": args.note,
            "loadavg_start": loadavg_start, "loadavg_end": os.getloadavg()[0],
            "machine": machine_info(), "versions": versions_start,
            "suite_command": shlex.join(suite), "raw_dir": os.path.relpath(raw, output),
        },
        "runs": ctx.runs, "fairness": ctx.fairness, "baselines": ctx.baselines, "summary": summary,
        "targets": evaluate_targets(summary, workers),
    }
    commit_end = versions(wrk, [])["sharedsock_commit"]
    if commit_end != versions_start["sharedsock_commit"]:
        data["meta"]["versions"]["sharedsock_commit"] += (
            f" at the start; HEAD moved to {commit_end} during the run (not measured: sharedsock ran "
            "from the copy taken at the start)" if SHAREDSOCK_SRC is not None else f" at the start; {commit_end} at the end")
    output.mkdir(parents=True, exist_ok=True)
    write_report(data, output, args.no_chart, raw)
    return 0


def write_report(data: dict, output: Path, no_chart: bool, raw: Path | None = None) -> None:
    json_path = output / "latest.json"
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    if raw is not None:
        shutil.copy(json_path, raw / "results.json")
    chart = None
    python = venv_python()
    png = output / "latest.png"
    if not no_chart and python and data["runs"]:
        proc = subprocess.run([python, str(HERE / "chart.py"), str(json_path), str(png)],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            chart = png.name
        else:
            log("chart failed:\n" + proc.stderr[-2000:])
    markdown = render_markdown(data, chart)
    (output / "latest.md").write_text(markdown)
    log(f"wrote {output / 'latest.md'}, {json_path.name}" + (f", {png.name}" if chart else "")
        + (f"; raw output in {raw}" if raw else ""))
    for t in data["targets"]:
        log(f"  {t['id']} {t['status']:>4}  {t['target']}: {t['measured']}")


def render_only(source: Path, output: Path, no_chart: bool) -> int:
    """Recompute the summary, targets, table and chart of a saved run (no measuring)."""
    data = json.loads(source.read_text())
    data["summary"] = summarize(data["runs"], data["fairness"], data.get("baselines", []))
    data["targets"] = evaluate_targets(data["summary"], data["meta"]["workers"])
    output.mkdir(parents=True, exist_ok=True)
    write_report(data, output, no_chart)
    return 0

if __name__ == "__main__":
    sys.exit(main())
