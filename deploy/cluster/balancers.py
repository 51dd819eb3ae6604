"""HAProxy and nginx in the default namespace, run from the config files in ``deploy/``.

The files are what a user copies; the bed changes only what must differ on a test machine (the
listening addresses, paths, the user) and fails loudly if one of those lines is not there, so
the files and the bed cannot drift apart. The balancers listen on loopback only, on sockets
the bed binds itself (port 0) and hands over, so no fixed port can clash.
"""

from __future__ import annotations

import csv
import http.client
import io
import itertools
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from .hosts import wait_for

DEPLOY = Path(__file__).resolve().parents[1]
HAPROXY_CFG = DEPLOY / "haproxy" / "haproxy.cfg"
NGINX_CONF = DEPLOY / "nginx" / "sharedsock.conf"
FILE_HOSTS = ("10.213.37.11", "10.213.37.12", "10.213.37.13")  # the addresses the files name
APP_NAMES = ("flask", "django")
APP_PATHS = {"flask": "/api/status", "django": "/api/entries/"}


def substitute(text: str, changes: dict[str, str], source: Path) -> str:
    for old, new in changes.items():
        if text.count(old) < 1:
            raise RuntimeError(f"{source} no longer contains {old!r}; update deploy/cluster/balancers.py")
        text = text.replace(old, new)
    return text


def host_changes(addresses: list[str]) -> dict[str, str]:
    return {f"{old}:": f"{new}:" for old, new in zip(FILE_HOSTS, addresses) if old != new}


def loopback_listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(511)
    return sock


class Balancer:
    """A balancer process; ``ports`` maps each app to the loopback port it listens on."""

    name = ""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}

    def _launch(self, command: list[str], listeners: list[socket.socket], env: dict[str, str]) -> None:
        with open(self.dir / "stderr.log", "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                         pass_fds=[s.fileno() for s in listeners], env=env,
                                         start_new_session=True, stdin=subprocess.DEVNULL)
        for sock in listeners:
            sock.close()

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.dir.glob("*.log")))

    def answering(self) -> bool:
        """Every port answers HTTP (the sockets listen before the balancer runs, so a connect
        alone proves nothing)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
        for app, port in self.ports.items():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", APP_PATHS[app])
                conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                return False
            finally:
                conn.close()
        return True

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its workers, should they outlive it
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(10)


class HAProxy(Balancer):
    name = "haproxy"

    def start(self, binary: str, addresses: list[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        listeners = {app: loopback_listener() for app in APP_NAMES}
        self.ports = {app: sock.getsockname()[1] for app, sock in listeners.items()}
        changes = {
            "    log /dev/log local0\n": "",
            "    user haproxy\n    group haproxy\n": "",
            "/run/haproxy/admin.sock": str(self.dir / "admin.sock"),
            "bind 127.0.0.1:8090": f"bind fd@{listeners['flask'].fileno()}",
            "bind 127.0.0.1:8091": f"bind fd@{listeners['django'].fileno()}",
            **host_changes(addresses),
        }
        config = self.dir / "haproxy.cfg"
        config.write_text(substitute(HAPROXY_CFG.read_text(), changes, HAPROXY_CFG))
        check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True,
                               pass_fds=[s.fileno() for s in listeners.values()], timeout=60)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c refused {config}:\n{check.stdout}{check.stderr}")
        self._launch([binary, "-db", "-f", str(config)], list(listeners.values()), dict(os.environ))
        wait_for(lambda: self.status("h1"), 30, "haproxy's stats socket")

    def stats(self) -> list[dict[str, str]]:
        """``show stat`` on the stats socket: one row per frontend, server and backend."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.dir / "admin.sock"))
            sock.sendall(b"show stat\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        text = b"".join(chunks).decode().lstrip("# ")
        return list(csv.DictReader(io.StringIO(text)))

    def server(self, app: str, host: str) -> dict[str, str]:
        for row in self.stats():
            if row["pxname"] == app and row["svname"] == host:
                return row
        raise KeyError(f"no server {host} in backend {app}")

    def status(self, host: str) -> set[str]:
        """The host's health status in every backend: {"UP"}, {"DOWN"}, or a mix while changing."""
        try:
            rows = self.stats()
        except OSError:  # not listening on its stats socket yet
            return set()
        return {row["status"].split()[0] for row in rows
                if row["svname"] == host and row["pxname"] in APP_NAMES}

    def wait_status(self, host: str, wanted: str, timeout: float) -> float:
        """When (monotonic) every backend first showed ``host`` as ``wanted``."""
        wait_for(lambda: self.status(host) == {wanted}, timeout, f"haproxy to mark {host} {wanted}",
                 interval=0.02)
        return time.monotonic()

    def check_settings(self) -> tuple[float, int]:
        """(inter in seconds, fall) of the health checks, read from the config file."""
        inter, fall = 2.0, 3  # HAProxy's defaults
        for line in HAPROXY_CFG.read_text().splitlines():
            words = line.split()
            if words[:2] == ["default-server", "check"]:
                for key, value in itertools.pairwise(words):
                    if key == "inter":
                        inter = float(value[:-2]) / 1000 if value.endswith("ms") else float(value.rstrip("s"))
                    elif key == "fall":
                        fall = int(value)
        return inter, fall


NGINX_MAIN = """# The process-level part a distribution's /etc/nginx/nginx.conf has; the bed's own.
daemon off;
master_process on;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format upstreams '$status $upstream_addr $upstream_status';
    access_log {d}/access.log upstreams;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/sharedsock.conf;
}}
"""


class Nginx(Balancer):
    name = "nginx"

    def start(self, binary: str, addresses: list[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        listeners = {app: loopback_listener() for app in APP_NAMES}
        self.ports = {app: sock.getsockname()[1] for app, sock in listeners.items()}
        changes = {
            "listen 127.0.0.1:8080;": f"listen 127.0.0.1:{self.ports['flask']};",
            "listen 127.0.0.1:8081;": f"listen 127.0.0.1:{self.ports['django']};",
            **host_changes(addresses),
        }
        (self.dir / "sharedsock.conf").write_text(substitute(NGINX_CONF.read_text(), changes, NGINX_CONF))
        main = self.dir / "nginx.conf"
        main.write_text(NGINX_MAIN.format(d=self.dir))
        inherited = "".join(f"{sock.fileno()};" for sock in listeners.values())
        env = dict(os.environ, NGINX=inherited)  # nginx takes listening sockets from NGINX
        command = [binary, "-p", str(self.dir), "-c", str(main), "-e", str(self.dir / "error.log")]
        check = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True, timeout=60)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t refused {main}:\n{check.stdout}{check.stderr}")
        self._launch(command, list(listeners.values()), env)

    def retried_after(self, status: int) -> int:
        """Requests that a host answered with ``status`` and nginx then sent to another one."""
        path = self.dir / "access.log"
        if not path.exists():
            return 0
        return sum(1 for line in path.read_text(errors="replace").splitlines()
                   if f" {status}, " in line or f"{status}, " in line.split(" ", 2)[-1])

    def retried(self) -> int:
        """Requests nginx sent to more than one host (``$upstream_status`` lists each try)."""
        path = self.dir / "access.log"
        if not path.exists():
            return 0
        return sum(1 for line in path.read_text(errors="replace").splitlines() if "," in line)


def _processes() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (process group, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found[int(entry.name)] = (os.getpgid(int(entry.name)), cmdline)
        except (OSError, ProcessLookupError):
            continue
    return found


def stop_leftovers(state_dir: Path) -> list[str]:
    """Kill the balancers an earlier run left: the processes whose command line names our state
    directory (nginx's and HAProxy's masters, which the bed starts with their config there),
    with the rest of their process group (nginx's workers). Nothing else matches."""
    processes = _processes()
    marker = str(state_dir) + "/"
    groups = {group for pid, (group, cmdline) in processes.items()
              if marker in cmdline and ("nginx" in cmdline or "haproxy" in cmdline) and group == pid}
    killed = []
    for pid, (group, cmdline) in processes.items():
        if group in groups:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(f"{cmdline.split(' ')[0]} process {pid}")
            except ProcessLookupError:
                pass
    return killed
