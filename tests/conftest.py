"""Shared helpers: start a real sharedsock server process and talk to it over real sockets.

Servers bind port 0 (or a temp unix socket) and the tests read the real
address from the server's log, as a user would. Every wait polls a condition
against a generous deadline; on failure the server log is printed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
DEADLINE = 30.0  # generous: a loaded 2-core machine is slow
# The commands of the environment running the tests, found next to its interpreter, so the
# suite also runs from a virtualenv that is not activated (/path/venv/bin/pytest).
SHAREDSOCK = str(Path(sys.executable).with_name("sharedsock"))

_LISTENING = re.compile(r"Listening at: (\S+)")
_BOOTED = re.compile(r"Booted worker (\d+) \(generation (\d+)\)")


def wait_for(condition, timeout: float = DEADLINE, interval: float = 0.05, message: str = "condition"):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)



class BackgroundLoop:
    """Runs ``step()`` over and over in a daemon thread while the ``with`` block runs: the
    constant traffic or probing a test counts while it does something to the server."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(DEADLINE * 2)

    def pause(self, seconds: float) -> None:
        """Wait between steps, cut short by the end of the block."""
        self._stop.wait(seconds)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.step()

    def step(self) -> None:
        raise NotImplementedError

class Server:
    """A sharedsock process started from the command line, as a user would."""

    def __init__(self, args: list[str], tmp_path: Path, env: dict | None = None,
                 cwd: Path | None = None, command: list[str] | None = None,
                 pass_fds: tuple[int, ...] = ()) -> None:
        self.log_path = tmp_path / f"server-{time.monotonic_ns()}.log"
        self._log_file = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APPS), full_env.get("PYTHONPATH")]))
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self.args = (command or [SHAREDSOCK]) + args
        self.proc = subprocess.Popen(self.args, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     env=full_env, cwd=str(cwd or tmp_path),
                                     start_new_session=True, pass_fds=pass_fds)
        self.url = ""

    # -- log ---------------------------------------------------------------

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = DEADLINE, count: int = 1) -> list[re.Match]:
        regex = re.compile(pattern)

        def found():
            matches = list(regex.finditer(self.log()))
            return matches if len(matches) >= count else None

        try:
            return wait_for(found, timeout, message=f"{pattern!r} x{count} in the server log")
        except AssertionError:
            print(self.log())
            raise

    def wait_ready(self, workers: int = 1, timeout: float = DEADLINE) -> Server:
        match = self.wait_log(_LISTENING.pattern, timeout)[0]
        self.url = match.group(1)
        self.wait_log(_BOOTED.pattern, timeout, count=workers)
        return self

    def booted_pids(self) -> list[int]:
        return [int(m.group(1)) for m in _BOOTED.finditer(self.log())]

    # -- addresses -----------------------------------------------------------

    @property
    def address(self):
        if self.url.startswith("unix:"):
            return self.url[5:]
        host_port = self.url.split("://", 1)[1]
        host, _, port = host_port.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    def connect(self, timeout: float = DEADLINE) -> socket.socket:
        address = self.address
        family = socket.AF_UNIX if isinstance(address, str) else (
            socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
        return sock

    # -- lifecycle -------------------------------------------------------------

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = DEADLINE) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(self.log())
            raise

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(self.log())
            raise

    def kill(self) -> None:
        """Everything in the server's process group, even after its first master left: a
        master started by a SIGUSR2 upgrade, or a worker it orphaned, stays in that group."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)
        self._log_file.close()


@pytest.fixture
def start_server(tmp_path):
    """``start_server(args, workers=N)`` -> a ready Server; every server is killed at teardown."""
    servers: list[Server] = []

    def start(args: list[str], workers: int | None = 1, wait: bool = True, **kwargs) -> Server:
        server = Server(args, tmp_path, **kwargs)
        servers.append(server)
        if wait:
            server.wait_ready(workers or 1)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture(params=["fork", "spawn"])
def start_method(request) -> str:
    """Engine tests run under both ways of sharing the socket."""
    return request.param


def http_get(server: Server, path: str = "/", headers: dict | None = None,
             timeout: float = DEADLINE) -> tuple[int, dict, bytes]:
    """One request on a fresh connection (Connection: close); returns (status, headers, body)."""
    lines = [f"GET {path} HTTP/1.1", "Host: test", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return parse_response(raw_exchange(server, data, timeout))


def raw_exchange(server: Server, data: bytes, timeout: float = DEADLINE) -> bytes:
    """Send raw bytes, read until the server closes the connection."""
    with server.connect(timeout) as sock:
        sock.sendall(data)
        return read_until_close(sock)


def read_until_close(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def parse_response(raw: bytes) -> tuple[int, dict, bytes]:
    """Parse one response (Content-Length, chunked or close-delimited)."""
    responses = parse_responses(raw)
    assert responses, f"no response in {raw[:200]!r}"
    return responses[0]


def parse_responses(raw: bytes, head_requests: int = 0) -> list[tuple[int, dict, bytes]]:
    """Every response in a byte stream, in order."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"incomplete response head: {raw[:200]!r}")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status < 200 or status in (204, 304) or head_requests > 0:
            if head_requests > 0 and status >= 200:
                head_requests -= 1
            body, raw = b"", rest
            if status < 200:
                continue
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body, raw = _dechunk(rest)
        elif "content-length" in headers:
            n = int(headers["content-length"])
            body, raw = rest[:n], rest[n:]
        else:
            body, raw = rest, b""
        out.append((status, headers, body))
    return out


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    body = []
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            _, _, data = data.partition(b"\r\n")
            return b"".join(body), data
        body.append(data[:size])
        data = data[size + 2:]


def pid_of(body: bytes) -> int:
    match = re.search(rb"pid=(\d+)", body)
    assert match, f"no pid in {body[:200]!r}"
    return int(match.group(1))


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_process_group(proc: subprocess.Popen) -> None:
    """Stop a peer (nginx, HAProxy) started with ``start_new_session``: SIGTERM, then SIGKILL
    to its whole group, so a worker that outlives its master cannot hold the port."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(10)


def debian_binary(name: str, package: str) -> str:
    """A peer's program (nginx, haproxy), installed with apt-get when missing; skips, saying
    why, only where it cannot be had."""
    def find() -> str | None:
        found = shutil.which(name) or f"/usr/sbin/{name}"
        return found if os.path.exists(found) else None

    found = find()
    if found:
        return found
    try:
        subprocess.run(["apt-get", "install", "-y", package], check=True, capture_output=True,
                       timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        reason = f"{name} is not installed and apt-get install -y {package} failed: {exc}"
        print(reason)
        pytest.skip(reason)
    found = find()
    if found is None:
        pytest.skip(f"{package} installed but no {name} binary found")
    return found


def python() -> str:
    return sys.executable


# -- helpers for the HTTP/WSGI suites: one server per module, raw keep-alive clients -----------


def module_server(tmp_path_factory, args: list[str], workers: int = 1, unix: bool = True) -> Server:
    """Start a server for a whole module, listening on TCP and (by default) a unix socket too.

    The caller kills it (``server.kill()``) at module teardown. Use ``at(server, url)``
    to talk to one particular listener.
    """
    import tempfile

    tmp = tmp_path_factory.mktemp("srv")
    binds = ["--bind", "127.0.0.1:0"]
    if unix:
        sock_dir = tempfile.mkdtemp(prefix="ss-")  # short: unix socket paths are limited to ~100 bytes
        binds += ["--bind", f"unix:{sock_dir}/s.sock"]
    server = Server(binds + args, tmp)
    try:
        server.wait_ready(workers)
        if unix:
            server.wait_log(r"Listening at: unix:", timeout=DEADLINE)
    except BaseException:
        server.kill()
        raise
    return server


def listener_urls(server: Server) -> dict[str, str]:
    """``{"tcp": url, "unix": url}`` for the listeners the server logged."""
    urls = {}
    for match in _LISTENING.finditer(server.log()):
        url = match.group(1)
        urls["unix" if url.startswith("unix:") else "tcp"] = url
    return urls


def at(server: Server, url: str) -> Server:
    """A view of ``server`` whose ``connect`` (and so http_get, raw_exchange) goes to ``url``."""
    import copy

    view = copy.copy(server)
    view.url = url
    return view


class ResponseReader:
    """Reads responses one at a time off a socket that stays open (keep-alive, pipelining)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.eof = False

    def _more(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _take_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._more():
                raise AssertionError(f"connection closed inside a line: {self.buffer[:200]!r}")
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._more():
                raise AssertionError(f"connection closed after {len(self.buffer)} of {n} bytes")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def next(self, head: bool = False) -> tuple[int, dict, bytes]:
        """The next response (1xx included) as (status, lower-cased headers, body)."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._more():
                raise AssertionError(f"no complete response head in {self.buffer[:200]!r}")
        raw_head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            headers[name] = headers[name] + ", " + value.strip() if name in headers else value.strip()
        if head or status < 200 or status in (204, 304):
            return status, headers, b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self._take_line().split(b";")[0], 16)
                if size == 0:
                    while self._take_line():
                        pass
                    return status, headers, b"".join(parts)
                parts.append(self._take(size))
                assert self._take(2) == b"\r\n"
        if "content-length" in headers:
            return status, headers, self._take(int(headers["content-length"]))
        while self._more():
            pass
        body, self.buffer = self.buffer, b""
        return status, headers, body

    def closed(self) -> bool:
        """True once the server has closed the connection (and nothing is left unread)."""
        return not self.buffer and not self._more()


@pytest.fixture(params=["tcp", "unix"])
def endpoint(server, request):
    """The module's ``server`` fixture, reached once over TCP and once over its unix socket."""
    return at(server, listener_urls(server)[request.param])


@contextlib.contextmanager
def loopback_connection(app, send_buffer: int = 0):
    """(server-side Connection, client socket) over real loopback TCP, for tests that must
    look inside the server (its socket options, what it allocates) while it serves ``app``."""
    from sharedsock.connection import Connection, ServerContext
    from sharedsock.http.parser import Limits
    from sharedsock.proxy import TrustedProxies
    from sharedsock.wsgi import base_environ

    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname(), timeout=30)
    server_sock, peer = listener.accept()
    listener.close()
    if send_buffer:
        server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    ctx = ServerContext(app, limits=Limits(), keepalive=5.0, header_timeout=30.0,
                        body_timeout=30.0, min_body_rate=0, root_path="", server_header="t",
                        trusted=TrustedProxies([]), access_log=None, multithread=False,
                        multiprocess=False)
    conn = Connection(server_sock, peer, base_environ("127.0.0.1", "80", "", False, False), ctx,
                      False)
    try:
        yield conn, client
    finally:
        conn.close()
        client.close()


def until_ready(conn) -> None:
    """Feed an in-process Connection what has arrived until a request is complete (poll, no sleeps)."""
    import select

    from sharedsock.connection import READY, WAIT

    for _ in range(100):
        ready, _, _ = select.select([conn.sock], [], [], 30)
        assert ready, "the request did not arrive"
        state = conn.on_readable()
        if state == READY:
            return
        assert state == WAIT
    raise AssertionError("the request never completed")


# -- gates: requests that block until the test lets them go (apps/shed_app.py) -------------


class Gates:
    """FIFOs the app's ``/block?NAME`` requests read one byte from; the test holds them open."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fds: dict[str, int] = {}

    def make(self, *names: str) -> None:
        for name in names:
            path = self.folder / name
            os.mkfifo(path)
            self.fds[name] = os.open(path, os.O_RDWR)  # never blocks, and keeps the FIFO open

    def release(self, name: str) -> None:
        """Let one request waiting at (or coming to) gate ``name`` go."""
        os.write(self.fds[name], b"x")

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


@pytest.fixture
def gates(tmp_path):
    folder = tmp_path / "shed"
    folder.mkdir()
    (folder / "calls").touch()
    found = Gates(folder)
    yield found
    found.close()


def calls(gates: Gates) -> list[str]:
    """Every call of the app so far, as ``pid path?query``."""
    return (gates.folder / "calls").read_text().splitlines()


def called(gates: Gates, target: str) -> bool:
    return any(line.split(" ", 1)[1] == target for line in calls(gates))
