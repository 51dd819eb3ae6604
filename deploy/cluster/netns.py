"""The hosts' network: one namespace per host, a veth pair each, joined by a bridge.

The bridge, in the default namespace, carries the only address there in the private range (the
balancers reach the hosts through it); the hosts' addresses exist inside their namespaces only.
Nothing is routed or forwarded anywhere else. Every name starts with ``ssk`` so that ``down``
can find and remove what a crashed run left behind without touching anything else.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess

PREFIX = "ssk"
BRIDGE = "ssk-br0"
DEFAULT_SUBNET = "10.213.37.0/24"


class Forbidden(Exception):
    """The machine does not let us create network namespaces (not root, or a sandbox)."""


def ip(*args: str, check: bool = True, netns: str | None = None) -> subprocess.CompletedProcess:
    command = [shutil.which("ip") or "/usr/sbin/ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result


def namespace(index: int) -> str:
    return f"{PREFIX}-h{index}"


class Network:
    """Addresses of the bed: the bridge is ``.1``, host N is ``.(10 + N)``."""

    def __init__(self, subnet: str = DEFAULT_SUBNET, hosts: int = 3) -> None:
        self.subnet = ipaddress.ip_network(subnet)
        if self.subnet.prefixlen > 28:
            raise ValueError(f"{subnet}: the bed needs at least a /28")
        self.hosts = hosts

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def host_address(self, index: int) -> str:
        return str(self.subnet.network_address + 10 + index)

    # -- up and down ---------------------------------------------------------------

    def check_allowed(self) -> None:
        """Raise Forbidden, with the reason, when namespaces cannot be made here."""
        if os.geteuid() != 0:
            raise Forbidden("network namespaces need root (run as root, as CI does)")
        from .packages import require

        require("ip")
        probe = f"{PREFIX}-probe"
        result = ip("netns", "add", probe, check=False)
        if result.returncode != 0:
            raise Forbidden(f"ip netns add is refused here: {result.stderr.strip()}")
        ip("netns", "del", probe, check=False)

    def check_free(self) -> None:
        """Refuse a subnet that overlaps a route the machine already has."""
        for line in ip("-4", "route", "show", "table", "all").stdout.splitlines():
            words = line.split()
            if not words or f"dev {BRIDGE}" in line:
                continue
            typed = words[0] in ("local", "broadcast", "unicast") and len(words) > 1
            target = words[1] if typed else words[0]
            try:
                route = ipaddress.ip_network(target, strict=False)
            except ValueError:  # "default", "unreachable", ...
                continue
            if route.overlaps(self.subnet):
                raise RuntimeError(f"{self.subnet} overlaps the route '{line.strip()}'; "
                                   f"choose another with --subnet")

    def up(self) -> None:
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")
        for index in range(1, self.hosts + 1):
            ns = namespace(index)
            outside = f"{ns}-v"
            ip("netns", "add", ns)
            ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", outside, "master", BRIDGE)
            ip("link", "set", outside, "up")
            ip("link", "set", "lo", "up", netns=ns)
            ip("addr", "add", f"{self.host_address(index)}/{self.subnet.prefixlen}", "dev", "eth0",
               netns=ns)
            ip("link", "set", "eth0", "up", netns=ns)


def namespaces() -> list[str]:
    """Every namespace of ours, from this run or an earlier one."""
    result = ip("netns", "list", check=False)
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    return [name for name in names if name.startswith(PREFIX + "-")]


def pids_in(ns: str) -> list[int]:
    result = ip("netns", "pids", ns, check=False)
    return [int(word) for word in result.stdout.split() if word.isdigit()]


def remove_all() -> list[str]:
    """Kill every process left in our namespaces, delete them and the bridge; returns what went."""
    import signal
    import time

    removed = []
    for ns in namespaces():
        for pid in pids_in(ns):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while pids_in(ns) and time.monotonic() < deadline:
            time.sleep(0.05)
        ip("netns", "del", ns, check=False)
        removed.append(f"namespace {ns}")
    links = ip("-o", "link", "show", check=False).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(PREFIX + "-"):
            ip("link", "del", name, check=False)
            removed.append(f"link {name}")
    return removed
