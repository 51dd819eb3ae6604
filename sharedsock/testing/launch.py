"""Starting a live test server's master: a fresh interpreter for an import string, a fork of
the test process for an app object; and the notify socket the master reports to."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHILD_ENV = "SHAREDSOCK_TESTING_SERVE"


class NotifySocket:
    """The datagram socket the master reports to; its path is short (unix paths are ~100 bytes)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="ss-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages: list[dict[str, str]] = []

    def receive(self, timeout: float) -> None:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        while ready:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            fields = dict(line.split("=", 1) for line in data.decode(errors="replace").split("\n")
                          if "=" in line)
            self.messages.append(fields)

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class MasterProcess:
    """The master's process: a subprocess, or a fork of this process."""

    def __init__(self, pid: int, popen: subprocess.Popen | None = None) -> None:
        self.pid = pid
        self.popen = popen
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            if self.popen is not None:
                self.returncode = self.popen.poll()
            else:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.returncode

    def kill_group(self) -> None:
        """The master and its workers: the master leads its own session."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.wait(10.0)


def start_interpreter(target: str, options: dict[str, Any], env: dict[str, str],
                      log_path: Path) -> MasterProcess:
    from ..bootstrap import fresh_interpreter

    try:
        env[CHILD_ENV] = json.dumps({"target": target, "options": options})
    except TypeError as exc:
        raise TypeError(f"options must be plain values (str, int, list...): {exc}") from None
    argv, env = fresh_interpreter("sharedsock.testing.child:main", env)
    with open(log_path, "wb") as log_file:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                 env=env, start_new_session=True)
    return MasterProcess(popen.pid, popen)


def fork_master(app: Callable, options: dict[str, Any], env: dict[str, str], log_path: Path) -> MasterProcess:
    """The child becomes the master: ``serve(app)`` in a copy of this process, then ``_exit``
    (it must never return into the test runner)."""
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pid = os.fork()
    if pid:
        os.close(log_fd)
        return MasterProcess(pid)
    code = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.environ.clear()
        os.environ.update(env)
        from ..runner import serve

        serve(app, **options)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:
        from ..errors import AppLoadError, ConfigError

        if isinstance(exc, (AppLoadError, ConfigError)):
            print(f"sharedsock: error: {exc}", file=sys.stderr)
            code = 2
        else:
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
