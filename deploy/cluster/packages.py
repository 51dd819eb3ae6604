"""The programs the bed runs, installed with apt-get (Debian packages) when missing."""

from __future__ import annotations

import os
import shutil
import subprocess

PACKAGES = {"haproxy": "haproxy", "nginx": "nginx-light", "ip": "iproute2"}


def say(text: str) -> None:
    print(f"cluster: {text}", flush=True)


def find_binary(name: str) -> str | None:
    found = shutil.which(name) or f"/usr/sbin/{name}"
    return found if os.path.exists(found) else None


def require(name: str) -> str:
    """The program's path, after apt-get install (and, if that fails, apt-get update and a second
    try) when it is missing."""
    found = find_binary(name)
    if found:
        return found
    package = PACKAGES[name]
    say(f"{name} is missing; apt-get install -y {package}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "install", "-y", "-qq", package], ["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", package]):
        try:
            subprocess.run(command, capture_output=True, env=env, timeout=600)
        except (OSError, subprocess.SubprocessError):
            break
        found = find_binary(name)
        if found:
            break
    if not found:
        raise RuntimeError(f"{name} is not installed and apt-get install {package} failed")
    if name != "ip":  # Debian starts a packaged service on install; the bed runs its own
        subprocess.run(["systemctl", "stop", name], capture_output=True, timeout=60, check=False)
    return found
