"""The multi-host test bed (deploy/cluster.py): real HTTP through real HAProxy and nginx to three
hosts in network namespaces, under load while hosts are reloaded, upgraded, killed and stopped.

It needs root for ``ip netns``; where the machine forbids namespaces the bed says why and these
tests skip. Everything else (a missing haproxy or nginx) is installed or fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "deploy" / "cluster.py"
SKIPPED = 77


def cluster(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(CLUSTER), *args], capture_output=True, text=True,
                            timeout=timeout, cwd=ROOT)
    print(result.stdout, result.stderr)
    if result.returncode == SKIPPED:
        pytest.skip(result.stdout.strip().splitlines()[-1])
    return result


def leftovers() -> list[str]:
    """Anything of a bed: namespaces, links named ssk-*, processes run from its state directory."""
    found = []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [line.split()[0] for line in namespaces.splitlines() if line.startswith("ssk-")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [line.split(":")[1].strip() for line in links.splitlines() if ": ssk-" in line]
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "/ssk-cluster/" in cmdline:
            found.append(f"process {proc.name}: {cmdline}")
    return found


def test_every_scenario_holds_and_the_bed_is_removed():
    result = cluster("test")
    assert result.returncode == 0, "a scenario fell short (see the table above)"
    table = result.stdout
    for scenario in ("rolling SIGHUP", "rolling SIGUSR2", "SIGKILL", "SIGTERM with --shutdown-delay",
                     "--max-queue"):
        assert scenario in table
    assert "| scenario | requests | non-2xx | connection errors | p99 latency | result |" in table
    assert "Share of requests per host and worker" in table
    assert leftovers() == []


def test_down_removes_a_bed_left_up():
    """``up`` leaves the bed running, as a crashed run would; ``down`` removes all of it."""
    up = cluster("up", timeout=300)
    try:
        assert up.returncode == 0
        assert any(name.startswith("ssk-h") for name in leftovers())
        assert any("haproxy" in item for item in leftovers())
    finally:
        down = cluster("down", timeout=120)
    assert down.returncode == 0
    assert leftovers() == []
