"""``SIGUSR2``: a new master from the code on disk, handed the listening sockets, no socket closed.

The old master starts the new one with the command line it was itself started
with, and sends it the listeners over a unix socket (SCM_RIGHTS, as it sends
them to spawned workers). The new master boots its workers on those sockets and,
once its first generation is ready, says ``ready`` on the same channel; only
then does the old master drain its workers and leave. Until that word the old
master keeps serving, so a new master that cannot boot changes nothing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

from .channel import LineReader, send_line
from .handoff import receive_boot, send_boot
from .listeners import Listener, adopt_in_worker

UPGRADE_FD_ENV = "SHAREDSOCK_UPGRADE_FD"
READY = "ready"


class Upgrade:
    """The old master's side: the new master's process and the channel to it."""

    def __init__(self, proc: subprocess.Popen, channel: socket.socket) -> None:
        self.proc = proc
        self.channel = channel
        self.reader = LineReader(channel)
        self.started = time.monotonic()
        self.ready = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        try:
            self.channel.close()
        except OSError:
            pass


def restart_command() -> list[str]:
    """The command line this process was started with, run by the same interpreter."""
    argv = list(getattr(sys, "orig_argv", [])) or [sys.executable, *sys.argv]
    return [sys.executable, *argv[1:]]


def start(listeners: list[Listener], cwd: str, status_listeners: Sequence[Listener] = ()) -> Upgrade:
    """Start the new master and send it the listeners; raises OSError if it cannot start.

    The --metrics-bind sockets go along, so a health check is never refused in between and
    an address bound to port 0 keeps its port."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ)
    env[UPGRADE_FD_ENV] = str(theirs.fileno())
    try:
        proc = subprocess.Popen(restart_command(), pass_fds=[theirs.fileno()], env=env, cwd=cwd,
                                close_fds=True)
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    try:
        every = [*listeners, *status_listeners]
        send_boot(ours, {"listeners": [listener.describe() for listener in every],
                         "fd_count": len(every), "status_count": len(status_listeners),
                         "old_pid": os.getpid()},
                  [listener.sock.fileno() for listener in every])
    except OSError:
        ours.close()
        proc.kill()
        proc.wait()
        raise
    ours.setblocking(False)
    return Upgrade(proc, ours)


class Handover:
    """The new master's side: the inherited listeners and the word it owes the old master."""

    def __init__(self, channel: socket.socket, old_pid: int, listeners: list[Listener],
                 status_listeners: list[Listener]) -> None:
        self.channel = channel
        self.old_pid = old_pid
        self.listeners = listeners
        self.status_listeners = status_listeners

    def say_ready(self) -> None:
        send_line(self.channel, READY, reliable=True)
        self.channel.close()


def inherited() -> Handover | None:
    """The listeners an old master sent us, if this process was started by an upgrade."""
    raw = os.environ.pop(UPGRADE_FD_ENV, None)
    if raw is None:
        return None
    channel = socket.socket(fileno=int(raw))
    message, fds = receive_boot(channel)
    every = adopt_in_worker(fds, message["listeners"])
    split = len(every) - int(message.get("status_count", 0))
    return Handover(channel, int(message["old_pid"]), every[:split], every[split:])
