"""Starting a worker process by fork or by spawn, and the master's record of it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from .appspec import AppSpec
from .config import Config
from .handoff import LineReader, control_pair, send_boot
from .listeners import Listener
from .logs import log

# Signals a person or a process manager may send that sharedsock has no use for (yet): by
# default most of them end a process, and a master that dies takes the port down with it.
UNUSED_SIGNALS = (signal.SIGUSR2, signal.SIGWINCH, signal.SIGALRM, signal.SIGVTALRM,
                  signal.SIGPROF, signal.SIGIO, signal.SIGPWR)

# What the master catches. A forked child runs the master's handlers until the worker
# installs its own: these are held (blocked) across fork() so one sent in between, say the
# SIGTERM of a shutdown, waits for the worker's handler instead of being lost.
MASTER_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTTIN,
                  signal.SIGTTOU, signal.SIGUSR1, signal.SIGCHLD, *UNUSED_SIGNALS)

_SPAWN_BOOT = (
    "import json, os, sys; "
    "sys.path[:] = json.loads(os.environ.pop('SHAREDSOCK_SYS_PATH')); "
    "from sharedsock.spawned import main; main()"
)


@dataclass(eq=False)
class WorkerProcess:
    """What the master knows about one worker."""

    pid: int
    generation: int
    index: int
    control: socket.socket
    reader: LineReader
    started: float
    popen: subprocess.Popen | None = None
    ready: bool = False
    ready_at: float = 0.0
    last_beat: float = 0.0
    oldest_request: float = 0.0
    leaving: bool = False  # asked to be replaced (max-requests) or surplus
    term_sent: float = 0.0
    abort_sent: float = 0.0
    kill_sent: float = 0.0
    load_error: str | None = None
    files: list[str] = field(default_factory=list)

    def signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def tell(self, message: str) -> None:
        """A line on the control channel; the worker reads it when it next looks."""
        try:
            self.control.send(message.encode() + b"\n")
        except OSError:
            pass

    def terminate(self) -> None:
        if not self.term_sent:
            self.term_sent = time.monotonic()
            self.signal(signal.SIGTERM)

    def kill(self) -> None:
        if not self.kill_sent:
            self.kill_sent = time.monotonic()
            self.signal(signal.SIGKILL)


def start_worker(config: Config, spec: AppSpec, listeners: list[Listener], generation: int,
                 index: int, keep_out: list[int]) -> WorkerProcess:
    """Start one worker; ``keep_out`` are master-only fds a forked child must close."""
    master_end, worker_end = control_pair()
    if config.start_method == "fork":
        held = signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS)
        pid = os.fork()
        if pid == 0:
            master_end.close()
            _run_forked(config, spec, listeners, worker_end, generation, index, keep_out)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        popen = None
    else:
        env = dict(os.environ)
        env["SHAREDSOCK_CONTROL_FD"] = str(worker_end.fileno())
        env["SHAREDSOCK_SYS_PATH"] = json.dumps(sys.path)
        popen = subprocess.Popen([sys.executable, "-c", _SPAWN_BOOT], pass_fds=[worker_end.fileno()],
                                 env=env, close_fds=True)
        pid = popen.pid
    worker_end.close()
    if popen is not None:
        try:
            send_boot(master_end, {
                "config": config.to_dict(),
                "app": spec.to_dict(),
                "listeners": [l.describe() for l in listeners],
                "fd_count": len(listeners),
                "generation": generation,
                "index": index,
                "cwd": os.getcwd(),
            }, [l.sock.fileno() for l in listeners])
        except OSError as exc:
            log.error("could not hand the sockets to worker %d: %s", pid, exc)
    master_end.setblocking(False)
    now = time.monotonic()
    return WorkerProcess(pid, generation, index, master_end, LineReader(master_end), now,
                         popen=popen, last_beat=now)


def _run_forked(config: Config, spec: AppSpec, listeners: list[Listener], control: socket.socket,
                generation: int, index: int, keep_out: list[int]) -> None:
    """The child side of fork: never returns into the master's code."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for fd in keep_out:
            try:
                os.close(fd)
            except OSError:
                pass
        from .worker import Worker

        code = Worker(config, spec, listeners, control, index, generation).run()
    except BaseException:  # noqa: BLE001 - a forked child must reach os._exit
        try:
            log.exception("worker %d crashed", os.getpid())
        except BaseException:  # noqa: BLE001
            pass
    finally:
        try:
            for handler in log.handlers:
                handler.flush()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
