"""A live sharedsock server for tests: started in a child process, ready on an explicit signal.

The harness owns a ``NOTIFY_SOCKET`` datagram socket, the one systemd would own. The master
sends ``READY=1`` once every worker of the generation is ready, with the addresses it really
bound (``--bind 127.0.0.1:0``: the kernel's port, read back, never guessed or probed) and the
serving workers' pids in ``X_SHAREDSOCK_*`` fields, and ``STATUS=`` whenever they change.
Nothing is polled over HTTP and no log line is parsed to learn that the server is up.

How the master runs:

- an import string (``"pkg.wsgi:app"``, ``"pkg:create_app({'TESTING': True})"``): in a fresh
  interpreter with the test process's ``sys.path``, as in production; fork or spawn workers;
- an app object with ``start_method="fork"``: the test process forks, and the child calls
  ``sharedsock.serve(app)``, so an app built by a fixture (any closure) is served as is;
- an app object with ``start_method="spawn"``: a spawned worker cannot receive an object, so
  the object is looked up as a module-level name (``module:name``) and served by that name.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from email.message import Message
from pathlib import Path
from typing import Any

from .launch import MasterProcess, NotifySocket, fork_master, start_interpreter

READY_TIMEOUT = 60.0  # a loaded 2-core CI machine boots a Django site slowly
_ERROR_LINE = re.compile(r"^\[[^\]]*\] \[\d+\] \[(?:ERROR|CRITICAL)\] ", re.M)
_WORKER_IN_LINE = re.compile(r"\bworker (\d+)\b")
_DEFAULTS: dict[str, Any] = {"workers": 2}
_started: list[LiveServer] = []  # every server started in this process, for report hooks


def set_defaults(**options: Any) -> None:
    """Defaults for every later ``start()`` (the plugin's ``--sharedsock-*`` flags); an option
    given to ``start()`` itself wins. ``None`` leaves a default alone."""
    _DEFAULTS.update({k: v for k, v in options.items() if v is not None})


def started_servers() -> list[LiveServer]:
    return list(_started)


class ServerError(AssertionError):
    """The server did not start, did not stop cleanly, or logged an error or a crash.

    An AssertionError, so pytest reports it as a test failure with the server log."""


class URL(str):
    """The server's base URL, a plain ``str``; calling it joins a path, so both
    ``live_server.url + "/x"`` (pytest-django) and ``live_server.url("/x")`` (pytest-flask) work."""

    def __call__(self, path: str = "") -> str:
        if not path:
            return str(self)
        return str(self).rstrip("/") + "/" + path.lstrip("/")


class Response:
    """What ``LiveServer.request`` got: any status, 4xx and 5xx included (no exception)."""

    def __init__(self, status: int, headers: Message, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        return self.body.decode(self.headers.get_content_charset() or "utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


class LiveServer:
    """A running sharedsock master with its workers.

    ``url`` (the first address; callable to join a path), ``urls`` (every bound address),
    ``host``, ``port``, ``pids`` (the serving workers), ``master_pid`` and ``log`` (the whole
    server log so far) are read from the master's own reports."""

    def __init__(self, child: MasterProcess, notify: NotifySocket, log_path: Path, options: Mapping[str, Any],
                 allow_errors: bool) -> None:
        self._child = child
        self._notify = notify
        self.log_path = log_path
        self.options = dict(options)
        self.allow_errors = allow_errors
        self.master_pid = child.pid
        self.urls: list[str] = []
        self.pids: list[int] = []
        self.generation = 0
        self.killed: set[int] = set()  # workers the test killed: their deaths are not errors
        self.stopped = False
        self.stopped_at: float | None = None
        self.started_at = time.monotonic()

    # -- what the master said -------------------------------------------------

    @property
    def url(self) -> URL:
        return URL(self.urls[0]) if self.urls else URL("")

    @property
    def host(self) -> str | None:
        tcp = self._tcp()
        return tcp[0] if tcp else None

    @property
    def port(self) -> int | None:
        tcp = self._tcp()
        return tcp[1] if tcp else None

    def _tcp(self) -> tuple[str, int] | None:
        for url in self.urls:
            if url.startswith("http://"):
                host, _, port = url[len("http://"):].rpartition(":")
                return host.strip("[]"), int(port)
        return None

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __str__(self) -> str:
        return str(self.url)

    def __add__(self, other: str) -> str:
        return str(self.url) + other

    def __repr__(self) -> str:
        return f"<LiveServer {self.url or '(not ready)'} workers={self.pids}>"

    def _wait(self, what: str, done: Callable[[dict[str, str]], bool], timeout: float,
              after: int = 0) -> dict[str, str]:
        """The first message from index ``after`` on that satisfies ``done``; the server
        exiting first, or the deadline passing, is a ServerError with the log."""
        deadline = time.monotonic() + timeout
        index = after
        while True:
            for message in self._notify.messages[index:]:
                index += 1
                if done(message):
                    self._take(message)
                    return message
            code = self._child.poll()
            if code is not None:
                raise ServerError(f"the server exited (code {code}) while waiting for {what}\n"
                                  f"--- server log ---\n{self.log}")
            if time.monotonic() > deadline:
                raise ServerError(f"no {what} from the server within {timeout:g}s\n"
                                  f"--- server log ---\n{self.log}")
            self._notify.receive(0.1)

    def _take(self, message: dict[str, str]) -> None:
        if "X_SHAREDSOCK_LISTEN" in message:
            self.urls = message["X_SHAREDSOCK_LISTEN"].split()
        if "X_SHAREDSOCK_WORKERS" in message:
            self.pids = [int(p) for p in message["X_SHAREDSOCK_WORKERS"].split(",") if p]
        match = re.search(r"generation (\d+)", message.get("STATUS", ""))
        if match:
            self.generation = int(match.group(1))

    def _wanted(self) -> int:
        return int(self.options.get("workers") or 1)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> LiveServer:
        self._wait("READY=1", lambda m: m.get("READY") == "1", timeout)
        return self

    # -- acting on it -----------------------------------------------------------

    def reload(self, timeout: float = READY_TIMEOUT) -> list[int]:
        """SIGHUP: a new generation of workers; returns once every new one is ready (the
        master's next READY=1), with the new pids."""
        mark = len(self._notify.messages)
        previous = self.generation
        os.kill(self.master_pid, signal.SIGHUP)
        self._wait("READY=1 after SIGHUP", lambda m: m.get("READY") == "1" and _generation(m) > previous,
                   timeout, after=mark)
        return list(self.pids)

    def kill_worker(self, pid: int | None = None, sig: int = signal.SIGKILL,
                    timeout: float = READY_TIMEOUT) -> int:
        """Kill one worker (the first by default) as a crash would; returns once the master has
        replaced it and every worker is ready again. Its death is not counted as an error."""
        victim = pid if pid is not None else self.pids[0]
        if victim not in self.pids:
            raise ValueError(f"{victim} is not one of this server's workers {self.pids}")
        self.killed.add(victim)
        mark = len(self._notify.messages)
        os.kill(victim, sig)
        wanted = self._wanted()

        def replaced(message: dict[str, str]) -> bool:
            pids = [p for p in message.get("X_SHAREDSOCK_WORKERS", "").split(",") if p]
            return "X_SHAREDSOCK_WORKERS" in message and str(victim) not in pids and len(pids) >= wanted

        self._wait(f"a replacement for worker {victim}", replaced, timeout, after=mark)
        return victim

    def request(self, path: str = "/", data: bytes | None = None, headers: Mapping[str, str] | None = None,
                method: str | None = None, timeout: float = 30.0) -> Response:
        """One request with ``urllib``; any status comes back as a Response."""
        req = urllib.request.Request(self.url(path), data=data, headers=dict(headers or {}), method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as reply:
                return Response(reply.status, reply.headers, reply.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return Response(exc.code, exc.headers, exc.read())

    def get(self, path: str = "/", **kwargs: Any) -> Response:
        return self.request(path, **kwargs)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM and wait (up to the graceful timeout and a margin); then fail if the master
        did not exit 0, or the log has an error or a worker's crash the test did not cause."""
        if self.stopped:
            return
        self.stopped = True
        self.stopped_at = time.monotonic()
        grace = float(self.options.get("graceful_timeout", 30.0))
        problems = []
        try:
            if self._child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.master_pid, signal.SIGTERM)
                if self._child.wait(timeout if timeout is not None else grace + 30.0) is None:
                    problems.append("the server did not stop after SIGTERM; killed it")
                    self._child.kill_group()
            code = self._child.returncode
            if code not in (0, None) and not problems:
                problems.append(f"the server exited with code {code}")
        finally:
            self._notify.close()
        if not self.allow_errors:
            problems += [f"the server logged: {line}" for line in self.error_lines()]
        if problems:
            raise ServerError("\n".join(problems) + f"\n--- server log ---\n{self.log}")

    def error_lines(self) -> list[str]:
        """ERROR and CRITICAL lines (first line of each), except about workers the test killed."""
        found = []
        for match in _ERROR_LINE.finditer(self.log):
            line = self.log[match.start():].split("\n", 1)[0]
            workers = {int(p) for p in _WORKER_IN_LINE.findall(line)}
            if workers and workers <= self.killed:
                continue
            found.append(line)
        return found

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.stop()
        else:
            with contextlib.suppress(ServerError):
                self.stop()


def _generation(message: dict[str, str]) -> int:
    match = re.search(r"generation (\d+)", message.get("STATUS", ""))
    return int(match.group(1)) if match else 0


def import_string_for(app: Any) -> str | None:
    """``module:name`` of a module-level global that is ``app``, else None. The app's own
    module first, test modules and conftest files last (a worker would run their imports)."""
    home = getattr(app, "__module__", None)

    def rank(item: tuple[str, Any]) -> tuple[bool, bool]:
        last = item[0].rpartition(".")[2]
        return item[0] != home, last == "conftest" or last.startswith("test_") or last.endswith("_test")

    modules = sorted(sys.modules.items(), key=rank)
    for name, module in modules:
        if name == "__main__" or module is None:
            continue
        try:
            items = list(vars(module).items())
        except TypeError:
            continue
        for attr, value in items:
            if value is app and attr.isidentifier() and not attr.startswith("__"):
                return f"{name}:{attr}"
    return None


def start(app_or_target: Callable | str, *, ready_timeout: float = READY_TIMEOUT,
          allow_errors: bool = False, env: Mapping[str, str] | None = None,
          log_dir: str | os.PathLike | None = None, **options: Any) -> LiveServer:
    """Start a master with its workers and return once every worker is ready.

    ``options`` are ``serve()``'s; ``bind`` defaults to ``127.0.0.1:0`` and ``workers`` to 2
    (or the plugin's ``--sharedsock-workers``). ``allow_errors`` stops ``stop()`` from failing
    on logged errors (a test that makes the app raise on purpose). ``env`` adds variables."""
    from ..config import OPTIONS_BY_NAME

    unknown = sorted(set(options) - set(OPTIONS_BY_NAME))
    if unknown:
        raise TypeError(f"not sharedsock options: {', '.join(unknown)}")
    merged = {**_DEFAULTS, "bind": ["127.0.0.1:0"], **options}
    merged = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in merged.items()}
    environment = {**os.environ, **(env or {})}
    start_method = (merged.get("start_method") or environment.get("SHAREDSOCK_START_METHOD")
                    or ("fork" if hasattr(os, "fork") else "spawn"))
    merged["start_method"] = start_method
    target = app_or_target if isinstance(app_or_target, str) else None
    if target is None and start_method == "spawn":
        target = import_string_for(app_or_target)
        if target is None:
            raise ServerError(
                f"{app_or_target!r} cannot be served with start_method='spawn': a spawned worker "
                "imports the app by name, and this object is no module-level name. Give an import "
                "string instead (e.g. \"pkg.wsgi:app\" or \"pkg:create_app({'TESTING': True})\"), "
                "or use start_method='fork'")
    log_root = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="sharedsock-live-"))
    log_root.mkdir(parents=True, exist_ok=True)
    log_path = log_root / f"server-{time.monotonic_ns()}.log"
    notify = NotifySocket()
    child_env = dict(os.environ)
    for name in ("WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        child_env.pop(name, None)
    child_env.update(env or {})
    child_env.update(NOTIFY_SOCKET=notify.path, PYTHONUNBUFFERED="1")
    try:
        if target is not None:
            child = start_interpreter(target, merged, child_env, log_path)
        else:
            assert not isinstance(app_or_target, str)
            child = fork_master(app_or_target, merged, child_env, log_path)
    except BaseException:
        notify.close()
        raise
    server = LiveServer(child, notify, log_path, merged, allow_errors)
    _started.append(server)
    try:
        server.wait_ready(ready_timeout)
    except BaseException:
        server.stopped, server.stopped_at = True, time.monotonic()
        child.kill_group()
        notify.close()
        raise
    return server


@contextlib.contextmanager
def serving(app_or_target: Callable | str, **kwargs: Any) -> Iterator[LiveServer]:
    """``with serving(app, workers=2) as live:``; stopped (and checked) on the way out."""
    server = start(app_or_target, **kwargs)
    with server:
        yield server
