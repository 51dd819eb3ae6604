"""Bringing the bed up and down: network, hosts, balancers, and a state directory that ``down``
reads to clean up after a crashed run as well as after ``up``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .balancers import HAProxy, Nginx, stop_leftovers
from .hosts import APPS, EXAMPLES, Host, wait_for
from .load import Target
from .netns import DEFAULT_SUBNET, Network, remove_all
from .packages import require

STATE_DIR = Path(os.environ.get("SSK_CLUSTER_DIR") or Path(tempfile.gettempdir()) / "ssk-cluster")
BOOT_TIMEOUT = 90.0  # six masters with two workers each, on a loaded 2-core machine
class Bed:
    def __init__(self, subnet: str = DEFAULT_SUBNET, state_dir: Path = STATE_DIR) -> None:
        self.network = Network(subnet)
        self.dir = state_dir
        self.hosts = [Host(i, self.network.host_address(i), self.network.gateway, self.dir)
                      for i in range(1, self.network.hosts + 1)]
        self.haproxy = HAProxy(self.dir / "haproxy")
        self.nginx = Nginx(self.dir / "nginx")

    def up(self) -> None:
        haproxy, nginx = require("haproxy"), require("nginx")
        self.network.check_free()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "state.json").write_text(json.dumps({"subnet": str(self.network.subnet)}))
        self.network.up()
        template = self.migrated_template()
        for host in self.hosts:
            host.prepare(template)
            host.start()
        self.wait_hosts_ready(self.hosts)
        addresses = [host.address for host in self.hosts]
        self.haproxy.start(haproxy, addresses)
        self.nginx.start(nginx, addresses)
        for host in self.hosts:
            self.haproxy.wait_status(host.name, "UP", 30)
        for balancer in (self.haproxy, self.nginx):
            wait_for(balancer.answering, 30, f"{balancer.name} to answer")
        (self.dir / "state.json").write_text(json.dumps({
            "subnet": str(self.network.subnet),
            "haproxy": self.haproxy.ports, "nginx": self.nginx.ports}))

    def migrated_template(self) -> Path:
        """One migrated SQLite file for the Django site, copied to every host."""
        template = self.dir / "django-template.sqlite3"
        if not template.exists():
            env = dict(os.environ, EXAMPLE_SITE_DB=str(template), EXAMPLE_SITE_DEBUG="0")
            result = subprocess.run([sys.executable, str(EXAMPLES / "django_site" / "manage.py"),
                                     "migrate", "--noinput", "-v", "0"],
                                    capture_output=True, text=True, env=env, timeout=300)
            if result.returncode != 0:
                raise RuntimeError(f"manage.py migrate failed:\n{result.stdout}{result.stderr}")
        return template

    def wait_hosts_ready(self, hosts: list[Host], timeout: float = BOOT_TIMEOUT) -> None:
        for host in hosts:
            try:
                wait_for(host.ready, timeout, f"host {host.name} to be ready", interval=0.1)
            except TimeoutError:
                for app in APPS:
                    print(host.log(app)[-3000:])
                raise

    def targets(self) -> list[Target]:
        return [Target(balancer.name, app.name, balancer.ports[app.name], app.path, keepalive)
                for balancer in (self.haproxy, self.nginx) for app in APPS
                for keepalive in (True, False)]

    def describe(self) -> str:
        lines = []
        for balancer in (self.haproxy, self.nginx):
            for app, port in balancer.ports.items():
                lines.append(f"  {balancer.name:8} {app:7} http://127.0.0.1:{port}/")
        for host in self.hosts:
            lines.append(f"  host {host.name}: namespace {host.ns}, address {host.address} "
                         f"(flask :8000, django :8001, metrics :9101 and :9102), files in {host.dir}")
        return "\n".join(lines)


def down(state_dir: Path = STATE_DIR, keep_files: bool = False) -> list[str]:
    """Remove everything a bed (running, or left by a crashed run) consists of."""
    removed = stop_leftovers(state_dir)
    removed += remove_all()
    if not keep_files and state_dir.exists():
        shutil.rmtree(state_dir, ignore_errors=True)
        removed.append(f"directory {state_dir}")
    return removed
