"""Server hooks from the config file, and the small objects they are given.

Hooks see ``ServerView`` and ``WorkerView``, never the master's or the
worker's own classes: those carry private state a hook could break, and they
change. Each hook is looked up once; an undefined one costs a ``None`` check
(request hooks: nothing at all is called per request unless defined).

Failure policy: a hook that raises is logged with its traceback. Before the
server serves (``on_starting``, ``when_ready``, ``pre_fork`` of the first
workers) it stops the start with exit code 2; in a worker (``post_fork``,
``post_worker_init``) it fails that worker's boot, which the master treats
like an app that does not load. Once serving, master hooks that raise are
logged and the server carries on: a broken hook must not take the site down.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .config import Config
from .configfile import read_config_file
from .errors import AppLoadError, ConfigError
from .logs import format_exception_line, log


class HookError(ConfigError):
    """A hook raised in the master before the server was up: exit code 2."""


class WorkerView:
    """One worker, as hooks see it.

    ``pid`` (0 in ``pre_fork``: not forked yet), ``index`` (0..workers-1, reused by the
    replacement of a worker), ``generation`` (1, then one more per reload), ``config``
    (the resolved ``Config``), ``app`` (the WSGI app in the worker once loaded, else None),
    ``ready`` (master side: it reported ready), ``exit_code`` (in ``worker_exit``: its exit
    status, negative for the signal that killed it). Hooks running in the worker may set
    attributes of their own on it (a database connection for ``pre_request``, say).
    """

    def __init__(self, pid: int, index: int, generation: int, config: Config, app: Any = None,
                 ready: bool = False, exit_code: int | None = None) -> None:
        self.pid = pid
        self.index = index
        self.generation = generation
        self.config = config
        self.app = app
        self.ready = ready
        self.exit_code = exit_code

    def __repr__(self) -> str:
        return f"<worker pid={self.pid} index={self.index} generation={self.generation}>"


class ServerView:
    """The master, as hooks see it: ``config``, ``pid`` (the master's), ``generation`` (the one
    serving, or being started by a reload), ``num_workers`` (how many should run, after
    SIGTTIN/SIGTTOU) and ``workers`` (a fresh tuple of ``WorkerView`` at each access, in the
    master; empty in hooks that run in a worker)."""

    def __init__(self, config: Callable[[], Config], pid: int, generation: Callable[[], int],
                 num_workers: Callable[[], int],
                 workers: Callable[[], Iterable[WorkerView]] = tuple) -> None:
        self._config, self._generation, self._num = config, generation, num_workers
        self._workers = workers
        self.pid = pid

    config = property(lambda self: self._config())
    generation = property(lambda self: self._generation())
    num_workers = property(lambda self: self._num())
    workers = property(lambda self: tuple(self._workers()))

    def __repr__(self) -> str:
        return f"<sharedsock master pid={self.pid} generation={self.generation}>"

    @classmethod
    def snapshot(cls, config: Config, pid: int, generation: int, num_workers: int) -> ServerView:
        """The view a worker process gets: fixed values, no worker list."""
        return cls(lambda: config, pid, lambda: generation, lambda: num_workers)


def server_view(master: Any) -> ServerView:
    """The live view of a ``Master``; reads its state at each access, exposes none of it."""
    return ServerView(lambda: master.config, os.getpid(), lambda: master.generation,
                      lambda: master.target_workers,
                      lambda: [process_view(w, master.config) for w in master.workers])


def process_view(process: Any, config: Config, status: int | None = None) -> WorkerView:
    """A ``WorkerView`` of the master's record of a worker (``launcher.WorkerProcess``)."""
    code = os.waitstatus_to_exitcode(status) if status is not None else None
    return WorkerView(process.pid, process.index, process.generation, config,
                      ready=process.ready, exit_code=code)


class Hooks:
    """The hooks one config file defines, called with the failure policy above."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]] | None = None, path: str = "",
                 halt: Callable[[str, int], None] | None = None) -> None:
        self.functions = dict(functions or {})
        self.path = path
        self.halt = halt  # the master's way to stop with a reason and an exit code
        self.serving = False  # when_ready has run: master hooks no longer stop the start

    def __bool__(self) -> bool:
        return bool(self.functions)

    def defines(self, name: str) -> bool:
        return name in self.functions

    def _call(self, name: str, *args: Any) -> str | None:
        """Run one hook; None if it succeeded (or is not defined), else its one-line failure."""
        function = self.functions.get(name)
        if function is None:
            return None
        try:
            function(*args)
        except Exception as exc:
            reason = f"{name} hook in {self.path} raised {format_exception_line(exc)}"
            log.error("%s", reason, exc_info=exc)
            return reason
        return None

    # -- master ----------------------------------------------------------------

    def on_starting(self, server: ServerView) -> None:
        reason = self._call("on_starting", server)
        if reason is not None:
            raise HookError(reason)

    def worker_ready(self, server: ServerView) -> None:
        """Runs ``when_ready`` once, when the first generation is complete (all of its workers
        reported ready): from then on, clients are served by every worker asked for."""
        if self.serving:
            return
        ready = [w for w in server.workers if w.ready and w.generation == server.generation]
        if len(ready) < server.num_workers:
            return
        self.serving = True
        self._halt_on(self._call("when_ready", server))

    def pre_fork(self, server: ServerView, worker: WorkerView) -> None:
        reason = self._call("pre_fork", server, worker)
        if not self.serving:
            self._halt_on(reason)

    def worker_exit(self, server: ServerView, process: Any, status: int) -> None:
        if "worker_exit" in self.functions:
            self._call("worker_exit", server, process_view(process, server.config, status))

    def on_reload(self, server: ServerView) -> None:
        self._call("on_reload", server)

    def on_exit(self, server: ServerView) -> None:
        self._call("on_exit", server)

    def _halt_on(self, reason: str | None) -> None:
        if reason is not None and self.halt is not None:
            self.halt(reason, HookError.exit_code)

    # -- worker ----------------------------------------------------------------

    def post_fork(self, server: ServerView, worker: WorkerView) -> None:
        reason = self._call("post_fork", server, worker)
        if reason is not None:
            raise AppLoadError(reason)

    def post_worker_init(self, worker: WorkerView) -> None:
        reason = self._call("post_worker_init", worker)
        if reason is not None:
            raise AppLoadError(reason)

    def request_hooks(self, worker: WorkerView) -> tuple[Callable | None, Callable | None]:
        """``(pre_request(environ), post_request(environ, status))`` bound to ``worker``, each None
        when not defined. A raising ``pre_request`` fails its request (500, logged like an app
        error); a raising ``post_request`` is logged and the connection carries on."""
        pre = self.functions.get("pre_request")
        post = self.functions.get("post_request")
        pre_request = None
        if pre is not None:
            def pre_request(environ: dict) -> None:
                pre(worker, environ)
        post_request = None
        if post is not None:
            def post_request(environ: dict, status: str) -> None:
                try:
                    post(worker, environ, status)
                except Exception as exc:
                    log.error("post_request hook in %s raised %s", self.path,
                              format_exception_line(exc), exc_info=exc)
        return pre_request, post_request


NO_HOOKS = Hooks()


def load_hooks(config: Config, halt: Callable[[str, int], None] | None = None) -> Hooks:
    """The hooks of ``config.config`` (the config file the options were resolved from)."""
    if not config.config:
        return Hooks(halt=halt)
    found = read_config_file(config.config)
    return Hooks(found.hooks, found.path, halt)


class BootWithHooks:
    """What a worker loads in place of its ``AppSpec``: ``post_fork``, the app, then
    ``post_worker_init``. Going through the worker's app loading means a hook that raises
    fails the boot exactly as a broken app does (reported to the master, exit code 4)."""

    def __init__(self, spec: Any, hooks: Hooks, server: ServerView, worker: WorkerView) -> None:
        self.spec = spec
        self.name = spec.name
        self.hooks = hooks
        self.server = server
        self.worker = worker

    def load(self) -> Callable:
        self.hooks.post_fork(self.server, self.worker)
        app = self.spec.load()
        self.worker.app = app
        self.hooks.post_worker_init(self.worker)
        return app

    def request_hooks(self) -> tuple[Callable | None, Callable | None]:
        return self.hooks.request_hooks(self.worker)


def request_hooks(spec: Any) -> tuple[Callable | None, Callable | None]:
    """For the worker, once at start: the request hooks its boot carries, if any."""
    if isinstance(spec, BootWithHooks):
        return spec.request_hooks()
    return None, None


def with_hooks(spec: Any, hooks: Hooks, server: ServerView, worker: WorkerView) -> Any:
    """``spec`` itself when no worker-side hook is defined: nothing changes for those servers."""
    if not any(hooks.defines(n) for n in ("post_fork", "post_worker_init", "pre_request",
                                          "post_request")):
        return spec
    return BootWithHooks(spec, hooks, server, worker)

