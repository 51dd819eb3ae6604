"""Starting a worker process by fork or by spawn, and the master's record of it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from .appspec import AppSpec
from .bootstrap import fresh_interpreter
from .channel import EXIT_BOOT_FAILED, LOAD_ERROR, LineReader, control_pair, send_line
from .config import Config
from .handoff import send_boot
from .hooks import NO_HOOKS, Hooks, ServerView, WorkerView, with_hooks
from .listeners import Listener
from .logs import log
from .metrics import WorkerStats
from .privileges import Identity, become, popen_arguments, worker_identity
from .signals import MASTER_SIGNALS


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
    stats: WorkerStats | None = None  # its last STATS report (with --metrics-bind)

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
                 index: int, keep_out: list[int], hooks: Hooks = NO_HOOKS,
                 server: ServerView | None = None) -> WorkerProcess:
    """Start one worker; ``keep_out`` are master-only fds a forked child must close.

    ``server`` is the master's view for the hooks; a worker gets a fixed copy of it."""
    master_end, worker_end = control_pair()
    identity = worker_identity(config)
    num_workers = server.num_workers if server is not None else config.workers
    if config.start_method == "fork":
        snapshot = ServerView.snapshot(config, os.getpid(), generation, num_workers)
        if server is not None:
            hooks.pre_fork(server, WorkerView(0, index, generation, config))
        held = signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS)
        pid = os.fork()
        if pid == 0:
            master_end.close()
            _run_forked(config, spec, listeners, worker_end, generation, index, keep_out,
                        identity, hooks, snapshot)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        popen = None
    else:
        argv, env = fresh_interpreter("sharedsock.spawned:main")
        env["SHAREDSOCK_CONTROL_FD"] = str(worker_end.fileno())
        popen = subprocess.Popen(argv, pass_fds=[worker_end.fileno()], env=env, close_fds=True,
                                 **popen_arguments(identity))
        pid = popen.pid
    worker_end.close()
    if popen is not None:
        try:
            send_boot(master_end, {
                "config": config.to_dict(),
                "app": spec.to_dict(),
                "listeners": [listener.describe() for listener in listeners],
                "fd_count": len(listeners),
                "generation": generation,
                "index": index,
                "cwd": os.getcwd(),
                "server": {"pid": os.getpid(), "num_workers": num_workers},
            }, [listener.sock.fileno() for listener in listeners])
        except OSError as exc:
            log.error("could not hand the sockets to worker %d: %s", pid, exc)
    master_end.setblocking(False)
    now = time.monotonic()
    return WorkerProcess(pid, generation, index, master_end, LineReader(master_end), now,
                         popen=popen, last_beat=now)


def _run_forked(config: Config, spec: AppSpec, listeners: list[Listener], control: socket.socket,
                generation: int, index: int, keep_out: list[int], identity: Identity | None,
                hooks: Hooks, server: ServerView) -> None:
    """The child side of fork: never returns into the master's code."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for fd in keep_out:
            try:
                os.close(fd)
            except OSError:
                pass
        from .worker import Worker  # imported as the master's user: sharedsock's own files

        if identity is not None:
            try:
                become(identity)
            except OSError as exc:
                reason = f"could not switch to {identity.label}: {exc}"
                send_line(control, LOAD_ERROR, {"reason": reason, "files": {}}, reliable=True)
                code = EXIT_BOOT_FAILED
                return

        view = WorkerView(os.getpid(), index, generation, config)
        boot = with_hooks(spec, hooks, server, view)
        code = Worker(config, boot, listeners, control, index, generation).run()
    except BaseException:
        try:
            log.exception("worker %d crashed", os.getpid())
        except BaseException:
            pass
    finally:
        try:
            for handler in log.handlers:
                handler.flush()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
