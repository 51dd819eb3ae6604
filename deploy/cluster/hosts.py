"""A host of the bed: a network namespace running sharedsock twice, for the example Flask app and
the example Django site, each with its own master, workers, metrics port and SQLite file.

Each app is served through a small release module written into the host's directory. It adds
two response headers, the host's name and the release number written in the module, so every
response says where it came from and which code served it. The masters run with ``--preload``:
the release module is imported once, by the master, so rewriting it on disk changes nothing
for a ``SIGHUP`` reload or a respawned worker; only a new master (``SIGUSR2``) reads it again.
A response carrying the new number therefore proves the new master's code is serving.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .netns import namespace, pids_in

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "example_projects"
SHUTDOWN_DELAY = 3.0  # above HAProxy's detection time (fall x inter), see deploy/haproxy
KEEPALIVE = 75.0  # above the balancers' idle times for server connections (nginx: 60 s)
GRACEFUL_TIMEOUT = 10.0


@dataclass(frozen=True)
class App:
    """One sharedsock master on every host."""

    name: str
    port: int
    metrics_port: int
    path: str  # what the load asks for
    source: Path  # put on the path
    inner: str  # the import that yields the example's WSGI app


FLASK = App("flask", 8000, 9101, "/api/status", EXAMPLES / "flask_app",
            "from notesapp import create_app\ninner = create_app()")
DJANGO = App("django", 8001, 9102, "/api/entries/", EXAMPLES / "django_site",
             "from exampleproject.wsgi import application as inner")
APPS = (FLASK, DJANGO)

RELEASE_MODULE = '''"""Release {release} of what host {host} serves: the example {app}, unchanged, plus two
response headers naming the host and the release its master loaded."""

import os
import time

RELEASE = "{release}"
HOST = "{host}"
DELAY = float(os.environ.get("SSK_CLUSTER_DELAY", "0"))  # the overload scenario slows one host

{inner}


def app(environ, start_response):
    def start(status, headers, exc_info=None):
        return start_response(status, [*headers, ("X-Cluster-Host", HOST), ("X-Release", RELEASE)],
                              exc_info)

    if DELAY:
        time.sleep(DELAY)
    return inner(environ, start)
'''


def release_module(app: App) -> str:
    return f"ssk_release_{app.name}"


class Host:
    """Host ``index`` (1..3): its namespace, address and directory under the bed's state dir."""

    def __init__(self, index: int, address: str, gateway: str, state_dir: Path) -> None:
        self.index = index
        self.gateway = gateway
        self.name = f"h{index}"
        self.ns = namespace(index)
        self.address = address
        self.dir = state_dir / self.name
        self.procs: list[subprocess.Popen] = []

    # -- files -------------------------------------------------------------------

    def prepare(self, django_template_db: Path) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "flask-data").mkdir(exist_ok=True)
        db = self.dir / "django.sqlite3"
        if not db.exists():
            db.write_bytes(django_template_db.read_bytes())
        self.write_release("1")

    def write_release(self, release: str) -> None:
        for app in APPS:
            text = RELEASE_MODULE.format(release=release, host=self.name, app=app.name, inner=app.inner)
            path = self.dir / f"{release_module(app)}.py"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)

    def pidfile(self, app: App) -> Path:
        return self.dir / f"{app.name}.pid"

    def log_path(self, app: App) -> Path:
        return self.dir / f"{app.name}.log"

    def log(self, app: App) -> str:
        path = self.log_path(app)
        return path.read_text(errors="replace") if path.exists() else ""

    # -- processes -----------------------------------------------------------------

    def command(self, app: App, extra: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, sys.executable, "-m", "sharedsock",
                "--bind", f"0.0.0.0:{app.port}", "--metrics-bind", f"0.0.0.0:{app.metrics_port}",
                "--workers", "2", "--preload", "--keepalive", str(KEEPALIVE),
                "--shutdown-delay", str(SHUTDOWN_DELAY), "--graceful-timeout", str(GRACEFUL_TIMEOUT),
                # The balancers connect from the bridge's address and set X-Forwarded-For.
                "--forwarded-allow-ips", f"127.0.0.1,::1,{self.gateway}",
                "--pid", str(self.pidfile(app)), *extra, f"{release_module(app)}:app"]

    def start(self, extra: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        """Start both masters (in their own session, so the bed outlives ``up``)."""
        for app in APPS:
            full_env = dict(os.environ)
            full_env.update({
                "PYTHONPATH": os.pathsep.join(filter(None, [str(self.dir), str(app.source),
                                                           os.environ.get("PYTHONPATH")])),
                "PYTHONDONTWRITEBYTECODE": "1",  # the release module is read from its source
                "PYTHONUNBUFFERED": "1",
                "NOTES_DATA_DIR": str(self.dir / "flask-data"),
                "EXAMPLE_SITE_DB": str(self.dir / "django.sqlite3"),
                "EXAMPLE_SITE_DEBUG": "0",
                "EXAMPLE_SITE_ALLOWED_HOSTS": "127.0.0.1,localhost",
            })
            full_env.update(env or {})
            with open(self.log_path(app), "ab") as log:
                self.procs.append(subprocess.Popen(
                    self.command(app, extra or []), stdout=log, stderr=subprocess.STDOUT, env=full_env,
                    cwd=str(self.dir), start_new_session=True, stdin=subprocess.DEVNULL))

    def master(self, app: App) -> int | None:
        try:
            return int(self.pidfile(app).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def masters(self) -> list[int]:
        return [pid for pid in (self.master(app) for app in APPS) if pid is not None]

    def signal_masters(self, signum: int) -> list[int]:
        pids = self.masters()
        for pid in pids:
            os.kill(pid, signum)
        return pids

    def kill(self) -> int:
        """SIGKILL every process in the namespace at once; returns how many there were."""
        pids = pids_in(self.ns)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.reap()
        for app in APPS:
            self.pidfile(app).unlink(missing_ok=True)  # no master is left to remove it
        return len(pids)

    def reap(self) -> None:
        """Collect the exit of masters we started (an upgraded master is not our child)."""
        for proc in self.procs:
            proc.poll()
        self.procs = [proc for proc in self.procs if proc.returncode is None]

    # -- the master's own endpoints ----------------------------------------------------

    def get(self, app: App, path: str, timeout: float = 3.0) -> tuple[int, str]:
        url = f"http://{self.address}:{app.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def ready(self) -> bool:
        try:
            return all(self.get(app, "/readyz")[0] == 200 for app in APPS)
        except OSError:
            return False

    def metrics(self, app: App) -> str:
        return self.get(app, "/metrics", timeout=10)[1]


def gone(pid: int) -> bool:
    """Exited; a zombie not yet reaped by its parent counts as exited. One that is our child (a
    master we started, or an upgraded one handed to us as the subreaper) is reaped here."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def wait_for(condition, timeout: float, what: str, interval: float = 0.05):
    """Poll ``condition`` until truthy; raise TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text format, as samples: (name, labels, value)."""
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line.strip())
        if match:
            labels = dict(_LABEL.findall(match.group(2) or ""))
            samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(value for sample, got, value in parse_metrics(text)
               if sample == name and all(got.get(k) == v for k, v in labels.items()))
