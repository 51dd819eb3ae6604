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
from sharedsock.bootstrap import fresh_interpreter
from sharedsock.config import Config, build_config
from sharedsock.errors import SharedsockError, exit_code_for

BOOT_ENV = "SHAREDSOCK_DJANGO_BOOT"
ADDRESSES = "{addresses}"  # in the banner: replaced by the bound addresses


def exec_master(config: Config, spec: AppSpec, banner: str = "") -> NoReturn:
    """Replace this process with the master; ``config`` and ``spec`` must already be validated.

    The master prints ``banner`` on stdout once it has bound every address, so a taken port
    is never preceded by a "Starting ..." that did not happen.
    """
    boot = {"config": config.to_dict(), "app": spec.to_dict(), "banner": banner}
    argv, env = fresh_interpreter("sharedsock.integrations.django.handover:main")
    env[BOOT_ENV] = json.dumps(boot)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, env)


def main() -> NoReturn:
    """Run the master in the fresh interpreter; exit with its exit code."""
    from sharedsock.runner import run

    boot = json.loads(os.environ[BOOT_ENV])  # kept: SIGUSR2 starts the same command again
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
        sys.exit(exit_code_for(exc))
    except KeyboardInterrupt:  # Ctrl-C before the master installed its handlers
        sys.exit(130)
    sys.exit(master.exit_code)
