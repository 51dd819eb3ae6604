"""``--check-config``: load the app the way a worker will, without serving it.

The check runs in a fresh interpreter with the workers' identity (``--user``/
``--group``), directory and ``sys.path``, through the same loader, so it finds
what the workers would find: an app that imports as root in the operator's
shell but cannot read its files as ``www-data`` fails here, not at 3 a.m.
It also keeps the checking process free of whatever the app's import does
(threads, ``sys.exit()``, a hang, which the deadline cuts short).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback

from .appspec import AppSpec
from .bootstrap import fresh_interpreter
from .config import Config
from .errors import AppLoadError, SharedsockError
from .privileges import popen_arguments, worker_identity

CHECK_ENV = "SHAREDSOCK_APP_CHECK"
DEADLINE = 60.0


def check_app(config: Config, spec: AppSpec) -> None:
    """Raise AppLoadError with the worker's one-line reason if the app does not load."""
    if spec.app is not None:
        return  # an object handed to serve(): it exists already
    read_fd, write_fd = os.pipe()
    argv, env = fresh_interpreter("sharedsock.appcheck:main")
    env[CHECK_ENV] = json.dumps({"app": spec.to_dict(), "fd": write_fd,
                                 "config_file": config.config if config.start_method == "spawn" else None})
    try:
        proc = subprocess.Popen(argv, env=env, pass_fds=[write_fd], stdin=subprocess.DEVNULL,
                                **popen_arguments(worker_identity(config)))
    except OSError as exc:
        os.close(read_fd)
        raise AppLoadError(f"could not start the check: {exc}") from None
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        try:
            proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AppLoadError(f"loading the app took longer than {DEADLINE:.0f}s") from None
        report = pipe.read().decode("utf-8", "replace")
    if report.startswith("ok"):
        return
    reason = report.strip() or f"the check died while loading it (exit code {proc.returncode})"
    raise AppLoadError(f"app failed to load: {reason}")


def main() -> None:
    request = json.loads(os.environ.pop(CHECK_ENV))
    out = os.fdopen(request["fd"], "w")
    try:
        if request.get("config_file"):
            from .configfile import read_config_file

            read_config_file(request["config_file"])  # spawned workers read it again, as this user
        AppSpec.from_dict(request["app"]).load()
    except SystemExit as exc:
        out.write(f"the app called sys.exit({exc.code!r}) while loading")
        sys.exit(2)
    except Exception as exc:
        from .logs import format_exception_line

        if isinstance(exc, SharedsockError):  # already one line that says it all
            out.write(str(exc))
        else:
            traceback.print_exc()
            out.write(format_exception_line(exc))
        sys.exit(2)
    out.write("ok")
    out.close()
