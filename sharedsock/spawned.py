"""Entry point of a spawned worker: a fresh interpreter that receives its sockets by SCM_RIGHTS."""

from __future__ import annotations

import os
import socket
import sys


def main() -> None:
    from .channel import EXIT_BOOT_FAILED
    from .handoff import HandoffError, receive_boot

    try:
        control = socket.socket(fileno=int(os.environ.pop("SHAREDSOCK_CONTROL_FD")))
        message, fds = receive_boot(control)
    except (HandoffError, KeyError, ValueError, OSError) as exc:
        sys.stderr.write(f"sharedsock: worker {os.getpid()} did not receive its sockets: {exc}\n")
        sys.exit(EXIT_BOOT_FAILED)

    from .appspec import AppSpec
    from .config import build_config
    from .listeners import adopt_in_worker
    from .logs import setup_error_log
    from .worker import Worker

    try:
        os.chdir(message["cwd"])
    except OSError:
        pass
    config = build_config(("boot message", message["config"]))
    setup_error_log(config.error_log, config.log_level)
    listeners = adopt_in_worker(fds, message["listeners"])
    spec = AppSpec.from_dict(message["app"])
    worker = Worker(config, spec, listeners, control, message["index"], message["generation"])
    sys.exit(worker.run())
