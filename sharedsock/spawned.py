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

    from .appspec import AppSpec, file_stamps
    from .channel import EXIT_APP_LOAD_FAILED, LOAD_ERROR, send_line
    from .config import build_config
    from .errors import ConfigError
    from .hooks import ServerView, WorkerView, load_hooks, with_hooks
    from .listeners import adopt_in_worker
    from .logs import setup_error_log
    from .worker import Worker

    try:
        os.chdir(message["cwd"])
    except OSError:
        pass
    config = build_config(("boot message", message["config"]))
    setup_error_log(config.error_log, config.log_level)
    try:
        listeners = adopt_in_worker(fds, message["listeners"])
    except ConfigError as exc:  # TLS files this worker's user cannot read, or that changed since
        reason = f"the worker could not load the TLS files: {exc}"
        send_line(control, LOAD_ERROR, {"reason": reason, "files": {}}, reliable=True)
        sys.exit(EXIT_APP_LOAD_FAILED)
    spec = AppSpec.from_dict(message["app"])
    index, generation = message["index"], message["generation"]
    try:
        # The hooks are functions, which cannot travel in the boot message: read the file again.
        hooks = load_hooks(config)
    except ConfigError as exc:
        files = file_stamps([config.config]) if config.config else {}  # --reload: wait for a fix
        send_line(control, LOAD_ERROR, {"reason": str(exc), "files": files}, reliable=True)
        sys.exit(EXIT_APP_LOAD_FAILED)
    master = message.get("server") or {}
    server = ServerView.snapshot(config, master.get("pid", os.getppid()), generation,
                                 master.get("num_workers", config.workers))
    boot = with_hooks(spec, hooks, server, WorkerView(os.getpid(), index, generation, config))
    worker = Worker(config, boot, listeners, control, index, generation)
    sys.exit(worker.run())
