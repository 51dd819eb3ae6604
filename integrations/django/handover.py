"""Turning the ``manage.py runshared`` process into a sharedsock master that never saw the project.

By the time ``runshared`` is ready to serve, its process has imported every
model (``django.setup()``) and, through the system checks, every URLconf and
view. Workers forked from it would inherit those modules, and after a reload
would keep running the code from start-up. Purging ``sys.modules`` is not
enough: Django's app registry, admin site and signal receivers keep
references to the old classes. So the process replaces itself (``exec``, same
PID, same stdout and stderr) with a fresh interpreter that imports only
sharedsock; each worker then imports the project itself, through ``loader``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import NoReturn

from sharedsock.appspec import AppSpec
from sharedsock.config import Config, build_config
from sharedsock.errors import SharedsockError

BOOT_ENV = "SHAREDSOCK_DJANGO_BOOT"
ADDRESSES = "{addresses}"  # in the banner: replaced by the bound addresses
_BOOTSTRAP = (
    "import json, os, sys; "
    f"boot = json.loads(os.environ.pop({BOOT_ENV!r})); "
    "sys.path[:] = boot['sys_path']; "
    "from sharedsock.integrations.django.handover import main; main(boot)"
)


def exec_master(config: Config, spec: AppSpec, banner: str = "") -> NoReturn:
    """Replace this process with the master; ``config`` and ``spec`` must already be validated.

    The master prints ``banner`` on stdout once it has bound every address, so a taken port
    is never preceded by a "Starting ..." that did not happen.
    """
    boot = {"sys_path": list(sys.path), "config": config.to_dict(), "app": spec.to_dict(),
            "banner": banner}
    env = dict(os.environ)
    env[BOOT_ENV] = json.dumps(boot)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *_interpreter_flags(), "-c", _BOOTSTRAP], env)


def _interpreter_flags() -> list[str]:
    """Keep -W, -X and -O, which change behaviour, across the exec."""
    flags = [f"-W{w}" for w in sys.warnoptions]
    for key, value in sys._xoptions.items():
        flags.append(f"-X{key}" if value is True else f"-X{key}={value}")
    if sys.flags.optimize:
        flags.append("-" + "O" * sys.flags.optimize)
    return flags


def main(boot: dict) -> NoReturn:
    """Run the master in the fresh interpreter; exit with its exit code."""
    from sharedsock.runner import run

    banner = boot.get("banner", "")

    def announce(listeners: list) -> None:
        if banner:
            addresses = ", ".join(listener.url for listener in listeners)
            print(banner.replace(ADDRESSES, addresses), flush=True)

    try:
        config = build_config(("runshared", boot["config"]))
        master = run(config, AppSpec.from_dict(boot["app"]), on_bound=announce)
    except SharedsockError as exc:  # e.g. the port is taken: one line, like the checks before exec
        print(f"CommandError: {exc}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 1))
    except KeyboardInterrupt:  # Ctrl-C before the master installed its handlers
        sys.exit(130)
    sys.exit(master.exit_code)
