"""The master: binds once, keeps N workers alive, reloads and stops them. Never serves.

Signal handlers only queue the signal and wake the loop; everything happens
in ``_loop``, one step at a time: read worker messages, handle signals, reap,
enforce deadlines, keep the right number of workers running. Reloads start a
whole new generation and retire the old one only when every new worker has
said it is ready, so a reload never leaves the socket without acceptors.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections import deque
from typing import Any

from . import __version__, speedups, tls
from .appspec import AppSpec, library_prefixes
from .channel import (
    EXIT_APP_LOAD_FAILED,
    EXIT_BOOT_FAILED,
    EXIT_TIMED_OUT,
    FILES,
    HEARTBEAT,
    LOAD_ERROR,
    READY,
    RETIRE,
    STATS,
    STOP,
)
from .config import Config
from .errors import AppLoadError, ConfigError
from .hooks import load_hooks, server_view
from .launcher import WorkerProcess, start_worker
from .listeners import Listener, close_listeners, open_listeners, stop_new_connections
from .logs import format_exception_line, log, reopen_logs
from .metrics import MasterCounters, parse_worker_stats, worker_rss
from .privileges import socket_owner
from .signals import MASTER_SIGNALS, UNUSED_SIGNALS, set_process_title
from .status_server import StatusServer
from .statusdata import RateHistory
from .systemd import Notifier
from .upgrade import Handover, Upgrade

TICK = 0.25
ABORT_GRACE = 5.0  # after SIGABRT, how long a stuck worker gets to dump its stacks
WATCH_EVERY = 1.0
SETTLE = 0.25  # --reload: a change counts once the files stop changing for this long
# A worker that dies this soon after it booted is part of a crash loop: restarts wait
# BACKOFF_FIRST, doubling up to BACKOFF_MAX, until a worker stays up this long.
CRASH_WINDOW = 5.0
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 10.0
CRASH_REMINDER = 60.0
UPGRADE_BOOT_LIMIT = 60.0  # a new master that is not serving by then is given up
MEMORY_CHECK_EVERY = 2.0
_WAKE = object()


class Master:
    def __init__(self, config: Config, spec: AppSpec, on_bound: Any = None) -> None:
        self.config = config
        self.spec = spec
        self.on_bound = on_bound  # on_bound(listeners): a front end's banner, once the binds succeeded
        self.target_workers = config.workers
        self.generation = 1
        self.last_generation = 1  # generation numbers are never reused, even after a failed reload
        self.workers: list[WorkerProcess] = []
        self.listeners: list[Listener] = []
        self.signals: deque[int] = deque()
        self.sel = selectors.DefaultSelector()
        self.stopping = 0.0  # monotonic deadline of a graceful stop, 0 while running
        self.quick_stop = False
        self.quick_deadline = 0.0
        self.exit_code = 0
        self.halt_reason: str | None = None
        self.broken = False  # --reload: the app failed to load; wait for a file change
        self.boot_failures = 0
        self.next_spawn = 0.0
        self.ever_ready = False
        self.announced = False
        self.quick_crashes = 0  # workers in a row that died within CRASH_WINDOW of booting
        self.crash_reminder = 0.0
        self.last_crash = 0.0
        self.notifier = Notifier()
        self.serving_generation = 0  # the generation last reported ready (to systemd, hooks)
        self.status = ""
        self.reported: dict[str, str] = {}  # the X_SHAREDSOCK_* fields last sent with STATUS=
        self.upgrade: Upgrade | None = None  # SIGUSR2: the new master we started
        self.handover: Handover | None = None  # we are that new master: the old one waits
        self.handed_over = False  # a new master serves our sockets now: leave them be
        self.cwd = os.getcwd()
        self.counters = MasterCounters()
        self.history = RateHistory()  # requests/s per worker, for /status.json
        self.leave_reasons: dict[int, str] = {}  # pid -> why the worker is being replaced
        self.status_listeners: list[Listener] = []
        self.status_server: StatusServer | None = None
        self.shutdown_at = 0.0  # --shutdown-delay: when the drain begins after a SIGTERM
        self.next_memory_check = 0.0
        self.watched: dict[str, float] = {}
        self.next_watch = 0.0
        self.settling: list[str] = []  # changed files not yet reloaded for
        self._ignored_prefixes = library_prefixes()
        self._old_handlers: dict[int, Any] = {}
        self._old_wakeup_fd = -1
        self._wake_r = self._wake_w = -1
        self.hooks = load_hooks(config, halt=self._halt)
        self.view = server_view(self)

    # -- lifecycle ---------------------------------------------------------

    def run(self) -> int:
        """Serve until stopped; returns the process exit code."""
        if threading.current_thread() is not threading.main_thread():
            raise ConfigError("sharedsock must run on the main thread: Python only delivers "
                              "signals there")
        config = self.config
        from . import upgrade

        self.hooks.on_starting(self.view)
        self.handover = upgrade.inherited()
        if self.handover is not None:
            self.listeners = self.handover.listeners
        else:
            self.listeners = open_listeners(config.bind, config.backlog, config.umask,
                                            owner=socket_owner(config))
        try:
            tls.attach_contexts(self.listeners, config)
            if self.on_bound is not None:
                self.on_bound(self.listeners)
            if self.handover is None:  # an upgrade's new master takes the file once it serves
                self._write_pid()
            preloading = config.preload and self.spec.app is None
            if preloading:
                self._preload()
            if self.spec.app is not None and config.start_method == "fork" and self.handover is None:
                self._check_fork_safety()  # before freezing: frozen objects are out of its sight
            if preloading:
                gc.freeze()  # keep the preloaded objects' pages shared across fork
            if self.handover is not None and self.handover.status_listeners:
                self.status_listeners = self.handover.status_listeners
                if not config.metrics_bind:  # the new command line has none: close what came
                    close_listeners(self.status_listeners)
                    self.status_listeners = []
            elif config.metrics_bind:
                self.status_listeners = open_listeners((config.metrics_bind,), 64, config.umask)
            self._install_signals()
            if self.status_listeners:
                self._serve_status()
            set_process_title(f"sharedsock: master [{config.proc_name or self.spec.name}]")
            log.info("sharedsock %s, master pid %d", __version__, os.getpid())
            if self.handover is not None:
                log.info("upgrade: took over %d listening socket(s) from master %d; binds in the "
                         "configuration are not re-read until a full restart", len(self.listeners),
                         self.handover.old_pid)
            if self.spec.app is not None:  # preloaded: the app is known to import
                self._announce()
            for path in config.reload_extra_files:
                self._watch(path)
            self._loop()
        finally:
            self._cleanup()
            self.hooks.on_exit(self.view)
        return self.exit_code

    def _announce(self) -> None:
        """The addresses, once the app is known to load (its first worker is ready): an app
        that cannot be imported gives its error with no "Listening at" before it."""
        if self.announced:
            return
        self.announced = True
        for listener in self.listeners:
            log.info("Listening at: %s (%d)", listener.url, os.getpid())
        for listener in self.status_listeners:
            log.info("Metrics and health at: %s (/metrics, /livez, /readyz; status page /)", listener.url)
        log.info("Start method: %s, %d worker(s), %d thread(s) each; %s", self.config.start_method,
                 self.target_workers, self.config.threads, speedups.describe())

    def _preload(self) -> None:
        try:
            app = self.spec.load()
        except AppLoadError:
            raise
        except Exception as exc:  # the app's own import error: one line, like a worker reports it
            raise AppLoadError(format_exception_line(exc)) from exc
        self.spec = AppSpec(app=app, name=self.spec.name)

    def _check_fork_safety(self) -> None:
        """Once, before the first fork of an app built in this process (--preload, serve(app))."""
        from .forksafety import describe, find_unsafe

        keep = {listener.sock.fileno() for listener in self.listeners + self.status_listeners}
        lines = describe(find_unsafe(keep))
        if lines and self.config.strict_fork_safety:
            raise ConfigError(f"--strict-fork-safety: {'; '.join(lines)}")
        for line in lines:
            log.warning("%s", line)

    def _write_pid(self) -> None:
        """A stale file (its process is gone) is replaced; a live one means a second server."""
        path = self.config.pid
        if not path:
            return
        other = _pid_in(path)
        allowed = {os.getpid()} | ({self.handover.old_pid} if self.handover is not None else set())
        if other is not None and other not in allowed and _alive(other):
            raise ConfigError(f"--pid {path}: sharedsock already runs as pid {other} "
                              "(stop it, or remove the file if that process is not sharedsock)")
        try:
            with open(path, "w") as f:
                f.write(f"{os.getpid()}\n")
        except OSError as exc:
            raise ConfigError(f"--pid {path}: {exc.strerror}") from None

    def _remove_pid(self) -> None:
        """Only our own: after an upgrade the file names the new master."""
        if self.config.pid and _pid_in(self.config.pid) == os.getpid():
            try:
                os.unlink(self.config.pid)
            except OSError:
                pass

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        for sig in MASTER_SIGNALS:
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        # Python ignores SIGPIPE already; say so, in case an embedding program changed it.
        self._old_handlers[signal.SIGPIPE] = signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    def _on_signal(self, signum, frame) -> None:
        self.signals.append(signum)

    def _cleanup(self) -> None:
        for w in self.workers:
            w.kill()
        for w in self.workers:
            try:
                os.waitpid(w.pid, 0)
            except ChildProcessError:
                pass
            w.control.close()
        self.workers.clear()
        if self._old_handlers:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            for sig, handler in self._old_handlers.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            self._old_handlers.clear()
        for fd in (self._wake_r, self._wake_w):
            if fd != -1:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        self._close_status()
        self.sel.close()
        close_listeners(self.listeners, unlink=not self.handed_over)  # a new master's sockets now
        if self.upgrade is not None and not self.upgrade.ready:
            self._abandon_upgrade("this master is stopping")
        self._remove_pid()
        self.notifier.close()

    # -- loop --------------------------------------------------------------

    def _loop(self) -> None:
        self._maintain(time.monotonic())
        while True:
            for key, _ in self.sel.select(TICK):
                if key.data is _WAKE:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                elif key.data is self.upgrade:
                    self._read_upgrade()
                elif key.data is self.status_server:
                    self.status_server.on_event(key)
                else:
                    self._read_worker(key.data)
            while self.signals:
                self._handle_signal(self.signals.popleft())
            self._reap()
            now = time.monotonic()
            self._enforce_deadlines(now)
            self._check_stable(now)
            if self.upgrade is not None:
                self._check_upgrade(now)
            if self.status_server is not None:
                self.status_server.sweep(now)
            if self.shutdown_at and now >= self.shutdown_at and not self.stopping:
                log.info("--shutdown-delay is over: draining")
                self._begin_stop(quick=False)
            if self.config.max_worker_memory and now >= self.next_memory_check:
                self.next_memory_check = now + MEMORY_CHECK_EVERY
                self._check_memory()
            if self.notifier.enabled:
                self.notifier.ping_if_due(now)
                self._report_status()
            if self.stopping or self.quick_stop:
                if not self.workers:
                    return
                continue
            if self.halt_reason is not None:
                log.error("%s", self.halt_reason)
                self._begin_stop(quick=True)
                continue
            if self.config.reload and now >= self.next_watch:
                self._check_files()
                self.next_watch = now + (SETTLE if self.settling else WATCH_EVERY)
            self._maintain(now)

    def _handle_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # _reap runs every iteration
        if signum in (signal.SIGTERM, signal.SIGINT):
            if self.stopping and signum == signal.SIGINT:
                log.info("second SIGINT: stopping now")
                self._begin_stop(quick=True)
            elif not self.stopping and self.config.shutdown_delay and not self.shutdown_at:
                delay = self.config.shutdown_delay
                log.info("%s: not ready any more (/readyz 503); serving for %gs more, then "
                         "stopping gracefully", signal.Signals(signum).name, delay)
                self.shutdown_at = time.monotonic() + delay
                self.notifier.stopping()
            elif not self.stopping and not self.shutdown_at:
                log.info("%s: stopping gracefully (up to %gs)", signal.Signals(signum).name,
                         self.config.graceful_timeout)
                self._begin_stop(quick=False)
        elif signum == signal.SIGQUIT:
            log.info("SIGQUIT: stopping now")
            self._begin_stop(quick=True)
        elif self.stopping or self.quick_stop or self.shutdown_at:
            return
        elif signum == signal.SIGHUP:
            self._reload("SIGHUP")
        elif signum == signal.SIGTTIN:
            self.target_workers += 1
            log.info("SIGTTIN: %d worker(s)", self.target_workers)
        elif signum == signal.SIGTTOU:
            if self.target_workers > 1:
                self.target_workers -= 1
            log.info("SIGTTOU: %d worker(s)", self.target_workers)
        elif signum == signal.SIGUSR1:
            reopen_logs(None)
            for w in self.workers:
                w.signal(signal.SIGUSR1)
            log.info("SIGUSR1: log files reopened")
        elif signum == signal.SIGUSR2:
            self._begin_upgrade()
        elif signum in UNUSED_SIGNALS:
            level = logging.DEBUG if signum == signal.SIGWINCH else logging.INFO  # every terminal resize
            log.log(level, "%s: ignored (sharedsock has no use for it)", signal.Signals(signum).name)

    def _begin_stop(self, quick: bool) -> None:
        now = time.monotonic()
        self.notifier.stopping()
        if not quick and not self.handed_over:
            # New clients are refused from now on; the workers take the queued ones before
            # they close their copies (see worker _take_backlog).
            for listener in self.listeners:
                stop_new_connections(listener)
            for w in self.workers:
                if w.ready:  # one still booting may not have read its boot message yet
                    w.tell(STOP)
        close_listeners(self.listeners)  # workers close their copies as they drain
        if quick:
            self.quick_stop = True
            self.stopping = self.stopping or now
            for w in self.workers:
                w.signal(signal.SIGQUIT)
                w.term_sent = w.term_sent or now
            self.quick_deadline = now + 2.0
            return
        self.stopping = now + self.config.graceful_timeout
        for w in self.workers:
            w.terminate()

    def _reload(self, why: str) -> None:
        failed = tls.reload_contexts(self.listeners, self.config)
        if failed is not None:
            log.error("%s: not reloading, the TLS files do not load: %s; the workers serving keep "
                      "their certificate", why, failed)
            return
        if self.config.preload:
            log.warning("%s: restarting workers; code preloaded in the master is not reloaded", why)
        self.last_generation += 1
        self.generation = self.last_generation
        self.broken = False
        self.boot_failures = 0
        self.next_spawn = 0.0
        self.notifier.reloading()
        self.counters.reloads += 1
        log.info("%s: reloading, starting worker generation %d", why, self.generation)
        self.hooks.on_reload(self.view)

    # -- worker messages -----------------------------------------------------

    def _read_worker(self, w: WorkerProcess) -> None:
        lines, eof = w.reader.read_lines()
        now = time.monotonic()
        for line in lines:
            kind, _, payload = line.partition(" ")
            if kind == HEARTBEAT:
                w.last_beat = now
                try:
                    w.oldest_request = float(payload or 0)
                except ValueError:
                    pass
            elif kind == READY:
                w.ready = True
                w.ready_at = w.last_beat = now
                self.ever_ready = True
                self.boot_failures = 0
                self._announce()
                log.info("Booted worker %d (generation %d)", w.pid, w.generation)
                self.hooks.worker_ready(self.view)
            elif kind == RETIRE:
                w.leaving = True
                self.leave_reasons.setdefault(w.pid, "max_requests")
            elif kind == STATS:
                w.stats = parse_worker_stats(_json(payload)) or w.stats
                self.history.note(w, now)
            elif kind == FILES:
                for path, mtime in _stamps(_json(payload)).items():
                    self._watch(path, mtime)
            elif kind == LOAD_ERROR:
                data = _json(payload)
                if not isinstance(data, dict):
                    data = {}
                w.load_error = data.get("reason") or "the app failed to load"
                if self.config.reload:
                    for path, mtime in _stamps(data.get("files")).items():
                        self._watch(path, mtime)
        if eof:
            self.sel.unregister(w.control)

    # -- reaping and replacing -----------------------------------------------

    def _reap(self) -> None:
        for w in list(self.workers):
            try:
                pid, status = os.waitpid(w.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = w.pid, 0
            if pid == 0:
                continue
            self.workers.remove(w)
            try:
                self.sel.get_key(w.control)
            except (KeyError, ValueError):
                pass
            else:
                # Its last words (a load error, say) may still be unread when the exit is
                # noticed first: read them before judging the exit.
                self._read_worker(w)
            if w.stats is not None:
                self.counters.retired.add(w.stats)  # totals never go down when a worker leaves
            try:
                self.sel.unregister(w.control)
            except (KeyError, ValueError):
                pass
            w.control.close()
            if w.popen is not None:
                w.popen.returncode = os.waitstatus_to_exitcode(status) if status else 0
            self._worker_exited(w, status)
            self.hooks.worker_exit(self.view, w, status)

    def _worker_exited(self, w: WorkerProcess, status: int) -> None:
        expected = bool(w.term_sent or self.stopping or self.quick_stop)
        code = os.waitstatus_to_exitcode(status)
        if code >= 0:
            how = f"exit code {code}"
        else:
            name = signal.Signals(-code).name
            how = f"signal {name}"
            if -code == signal.SIGKILL and not w.kill_sent:
                how += " (not sent by sharedsock: the kernel's OOM killer? see dmesg)"
        if expected and code in (0, -signal.SIGTERM, -signal.SIGKILL, -signal.SIGQUIT):
            log.info("worker %d (generation %d) exited", w.pid, w.generation)
            return
        if w.term_sent and not w.ready:
            # Asked to leave while still starting (its generation was given up): whatever
            # it died of no longer concerns the generation now serving.
            log.info("worker %d (generation %d) exited while starting: %s", w.pid, w.generation, how)
            return
        if code == EXIT_TIMED_OUT or w.abort_sent:
            self.counters.restarts["timeout"] += 1
            log.error("worker %d (generation %d) timed out and was replaced", w.pid, w.generation)
            return
        if w.ready:
            self._crashed(w, how)
            return
        self._boot_failed(w, code, how)

    def _crashed(self, w: WorkerProcess, how: str) -> None:
        """A serving worker died. One that dies soon after booting, again and again, is
        restarted with a growing delay, and the loop is logged once, not per boot."""
        now = time.monotonic()
        self.counters.restarts["crash"] += 1
        if now - w.ready_at >= CRASH_WINDOW:
            self.quick_crashes = 0
        self.quick_crashes += 1
        if self.quick_crashes == 1:
            log.error("worker %d (generation %d) died: %s; replacing it", w.pid, w.generation, how)
            delay = 0.0
        else:
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.quick_crashes - 2))
            if self.quick_crashes == 2:
                log.error("workers keep dying soon after they boot (worker %d: %s); restarting "
                          "them with a growing delay, up to %gs", w.pid, how, BACKOFF_MAX)
                self.crash_reminder = now + CRASH_REMINDER
            elif now >= self.crash_reminder:
                log.error("workers still die soon after they boot: %d in a row (worker %d: %s)",
                          self.quick_crashes, w.pid, how)
                self.crash_reminder = now + CRASH_REMINDER
            log.debug("worker %d died %.1fs after booting: %s; next start in %.1fs", w.pid,
                      now - w.ready_at, how, delay)
        self.last_crash = now
        self.next_spawn = max(self.next_spawn, now + delay)

    def _check_stable(self, now: float) -> None:
        if self.quick_crashes and any(w.ready and w.started > self.last_crash
                                      and now - w.ready_at >= CRASH_WINDOW for w in self.workers):
            if self.quick_crashes > 1:
                log.info("workers stay up again after %d quick exits", self.quick_crashes)
            self.quick_crashes = 0

    def _boot_failed(self, w: WorkerProcess, code: int, how: str) -> None:
        reason = w.load_error or (
            "the worker did not receive its sockets" if code == EXIT_BOOT_FAILED
            else f"the worker died while starting ({how})")
        serving = [x for x in self.workers if x.ready and not x.term_sent]
        self.boot_failures += 1
        if w.generation == self.generation and any(x.generation < self.generation for x in serving):
            previous = max(x.generation for x in serving if x.generation < self.generation)
            log.error("reload failed: %s; the previous workers keep serving", reason)
            for x in self.workers:
                if x.generation == self.generation:
                    x.terminate()
            self.generation = self.serving_generation = previous
            self.notifier.ready(f"reload failed ({reason}); generation {previous} keeps serving")
            if self.config.reload:
                self.broken = True
            return
        if self.config.reload:
            if not self.broken:
                log.error("app failed to load: %s; waiting for a file change", reason)
                self._announce()  # the server is up, and recovers once the file is fixed
            self.broken = True
            return
        if not serving and (not self.ever_ready or code in (EXIT_APP_LOAD_FAILED, EXIT_BOOT_FAILED)):
            exit_code = 2 if code == EXIT_APP_LOAD_FAILED else 1
            self._halt(f"app failed to load: {reason}" if code == EXIT_APP_LOAD_FAILED
                       else f"worker failed to boot: {reason}", exit_code)
            return
        delay = min(30.0, 0.5 * (2 ** min(self.boot_failures, 6)))
        log.error("worker failed to start: %s; retrying in %.1fs", reason, delay)
        self.next_spawn = time.monotonic() + delay

    def _halt(self, reason: str, exit_code: int) -> None:
        if self.halt_reason is None:
            self.halt_reason = reason
            self.exit_code = exit_code

    def _enforce_deadlines(self, now: float) -> None:
        timeout = self.config.timeout
        for w in self.workers:
            if w.kill_sent:
                continue
            if self.quick_stop and now >= self.quick_deadline:
                w.kill()
            elif w.abort_sent:
                if now - w.abort_sent > ABORT_GRACE:
                    w.kill()
            elif w.term_sent:
                if now - w.term_sent > self.config.graceful_timeout + 1.0:
                    log.warning("worker %d did not finish in time; killing it", w.pid)
                    w.kill()
            elif not w.ready:
                if now - w.started > max(timeout, 30.0):
                    log.error("worker %d did not boot within %.0fs; killing it", w.pid,
                              max(timeout, 30.0))
                    w.kill()
            elif timeout:
                silent = now - w.last_beat
                busy = now - w.oldest_request if w.oldest_request else 0.0
                if silent > timeout or busy > timeout:
                    why = (f"a request running for {busy:.1f}s" if busy > timeout
                           else f"no heartbeat for {silent:.1f}s")
                    log.error("worker %d timed out (%s); sending SIGABRT", w.pid, why)
                    w.abort_sent = now
                    w.signal(signal.SIGABRT)
        if self.stopping and not self.quick_stop and now > self.stopping + 1.0:
            for w in self.workers:
                w.kill()

    def _maintain(self, now: float) -> None:
        if self.broken or now < self.next_spawn:
            return
        current = [w for w in self.workers if w.generation == self.generation and not w.leaving
                   and not w.term_sent]
        missing = self.target_workers - len(current)
        if missing > 0:
            for _ in range(missing):
                self._spawn()
            return
        if missing < 0:
            by_age = sorted(current, key=lambda x: x.started)
            for w in by_age[:-missing]:
                w.terminate()
            current = by_age[-missing:]
        if all(w.ready for w in current):
            if self.serving_generation != self.generation and len(current) == self.target_workers:
                self._generation_serving()
            for w in self.workers:
                if (w.generation != self.generation or w.leaving) and not w.term_sent:
                    reason = "reload" if w.generation != self.generation else \
                        self.leave_reasons.get(w.pid)
                    if reason is not None and not self.handed_over:
                        self.counters.restarts[reason] += 1
                    self.leave_reasons.pop(w.pid, None)
                    w.terminate()

    # -- health, metrics, memory ---------------------------------------------

    def ready_count(self) -> int:
        return sum(1 for w in self.workers if w.ready and not w.term_sent)

    def is_ready(self) -> bool:
        """/readyz: workers enough to serve, and no stop announced.

        The new master of an upgrade is ready while it boots: the old master's workers serve
        the same sockets until this one's are ready, and it stops this master if they never are."""
        if self.handover is not None and not (self.stopping or self.quick_stop or self.shutdown_at):
            return True
        if self.stopping or self.quick_stop or self.shutdown_at or not self.serving_generation:
            return False
        return self.ready_count() >= (self.config.ready_workers or self.target_workers)

    def _status_answer(self, path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            from .metrics import exposition

            ctype, body = exposition(self)
            return 200, ctype, body
        if path == "/livez":
            alive = bool(self.workers)
            return (200 if alive else 503), "text/plain", b"ok\n" if alive else b"no worker alive\n"
        if path == "/readyz":
            ready = self.is_ready()
            text = f"{'ready' if ready else 'not ready'}: {self.ready_count()} of " \
                   f"{self.target_workers} workers ready\n"
            return (200 if ready else 503), "text/plain", text.encode()
        if path in ("/", "/status.json"):
            from .status_page import page
            from .statusdata import status_json

            return status_json(self) if path != "/" else page()
        return 404, "text/plain", b"not found; try /, /status.json, /metrics, /livez or /readyz\n"

    def _serve_status(self) -> None:
        self.status_server = StatusServer(self.status_listeners, self.sel, self._status_answer)

    def _close_status(self) -> None:
        if self.status_server is not None:
            self.status_server.close()
            self.status_server = None
        close_listeners(self.status_listeners, unlink=not self.handed_over)  # a new master's too
        self.status_listeners = []

    def _check_memory(self) -> None:
        limit = self.config.max_worker_memory << 20
        for w in self.workers:
            if not w.ready or w.leaving or w.term_sent:
                continue
            rss = worker_rss(w.pid)
            if rss is not None and rss > limit:
                log.warning("worker %d uses %.1f MiB, over --max-worker-memory %d; replacing it",
                            w.pid, rss / 1048576, self.config.max_worker_memory)
                w.leaving = True
                self.leave_reasons[w.pid] = "memory"

    def _generation_serving(self) -> None:
        """Every worker of the current generation is ready: the server is (again) ready."""
        first = self.serving_generation == 0
        self.serving_generation = self.generation
        self.status = self._status_text()
        self.reported = self._serving_fields()
        self.notifier.notify(READY=1, STATUS=self.status, **self.reported)
        if first and self.handover is not None:
            # We are the new master of an upgrade: the old one may go now.
            try:
                self._write_pid()
            except ConfigError as exc:
                log.error("%s", exc)
            self.handover.say_ready()
            log.info("upgrade: serving; master %d drains and exits", self.handover.old_pid)
            self.handover = None

    def _status_text(self) -> str:
        ready = sum(1 for w in self.workers if w.ready and not w.term_sent)
        return f"{ready} of {self.target_workers} workers ready, generation {self.serving_generation}"

    def _serving_fields(self) -> dict[str, str]:
        """The real bound addresses and the serving workers' pids, for a harness that owns
        NOTIFY_SOCKET (sharedsock.testing): systemd ignores fields that start with X_."""
        pids = sorted(w.pid for w in self.workers
                      if w.ready and not w.term_sent and w.generation == self.serving_generation)
        return {"X_SHAREDSOCK_LISTEN": " ".join(listener.url for listener in self.listeners),
                "X_SHAREDSOCK_WORKERS": ",".join(map(str, pids))}

    def _report_status(self) -> None:
        if self.serving_generation:
            text, fields = self._status_text(), self._serving_fields()
            if text != self.status or fields != self.reported:
                self.status, self.reported = text, fields
                self.notifier.notify(STATUS=text, **fields)

    # -- SIGUSR2: upgrade ----------------------------------------------------

    def _begin_upgrade(self) -> None:
        if self.upgrade is not None:
            log.warning("SIGUSR2: refused, the upgrade to master %d is still under way",
                        self.upgrade.pid)
            return
        if self.handover is not None or self.serving_generation != self.generation or any(
                w.generation != self.generation for w in self.workers):
            log.warning("SIGUSR2: refused while workers are being started or replaced (a reload "
                        "or the first boot); send it again once they are ready")
            return
        from .upgrade import restart_command, start

        try:
            self.upgrade = start(self.listeners, self.cwd, self.status_listeners)
        except OSError as exc:
            log.error("SIGUSR2: could not start a new master: %s", exc)
            return
        if self.status_server is not None:
            self.status_server.pause()  # the new master answers health checks from now on
        self.sel.register(self.upgrade.channel, selectors.EVENT_READ, self.upgrade)
        log.info("SIGUSR2: upgrading: started new master %d (%s); this one serves until it is ready",
                 self.upgrade.pid, " ".join(restart_command()))

    def _read_upgrade(self) -> None:
        upgrade = self.upgrade
        assert upgrade is not None
        lines, eof = upgrade.reader.read_lines()
        if "ready" in lines and not upgrade.ready:
            upgrade.ready = True
            log.info("upgrade: master %d is serving; draining this master's workers", upgrade.pid)
            self.notifier.notify(MAINPID=upgrade.pid, READY=1)
            self.handed_over = True
            self._begin_stop(quick=False)
        if eof:
            self.sel.unregister(upgrade.channel)
            upgrade.close()

    def _check_upgrade(self, now: float) -> None:
        upgrade = self.upgrade
        assert upgrade is not None
        if upgrade.ready:
            return
        code = upgrade.proc.poll()
        if code is not None:
            self._upgrade_failed(f"the new master exited with code {code}")
        elif now - upgrade.started > UPGRADE_BOOT_LIMIT:
            self._abandon_upgrade(f"the new master was not serving after {UPGRADE_BOOT_LIMIT:g}s")

    def _abandon_upgrade(self, why: str) -> None:
        upgrade = self.upgrade
        if upgrade is None:
            return
        try:
            upgrade.proc.terminate()
            upgrade.proc.wait(self.config.graceful_timeout + 5)
        except subprocess.TimeoutExpired:
            upgrade.proc.kill()
            upgrade.proc.wait()
        self._upgrade_failed(why)

    def _upgrade_failed(self, why: str) -> None:
        upgrade = self.upgrade
        assert upgrade is not None
        log.error("upgrade failed: %s; this master keeps serving", why)
        try:
            self.sel.unregister(upgrade.channel)
        except (KeyError, ValueError):
            pass
        upgrade.close()
        self.upgrade = None
        if self.status_server is not None:
            self.status_server.resume()
        if self.config.pid and _pid_in(self.config.pid) != os.getpid():
            try:
                self._write_pid()
            except ConfigError as exc:
                log.error("%s", exc)

    def _spawn(self) -> None:
        used = {w.index for w in self.workers if w.generation == self.generation and not w.term_sent}
        index = next(i for i in range(len(used) + 1) if i not in used)
        keep_out = [self._wake_r, self._wake_w] + [w.control.fileno() for w in self.workers]
        if self.upgrade is not None:
            keep_out.append(self.upgrade.channel.fileno())
        keep_out += [listener.sock.fileno() for listener in self.status_listeners]
        if self.status_server is not None:
            keep_out += list(self.status_server.clients)
        try:
            w = start_worker(self.config, self.spec, self.listeners, self.generation, index, keep_out,
                             self.hooks, self.view)
        except OSError as exc:
            log.error("could not start a worker: %s", exc)
            self.next_spawn = time.monotonic() + 1.0
            return
        self.workers.append(w)
        self.sel.register(w.control, selectors.EVENT_READ, w)
        log.debug("started worker %d (generation %d)", w.pid, w.generation)

    # -- --reload --------------------------------------------------------------

    def _watch(self, path: str, mtime: float | None = None) -> None:
        """Watch ``path`` from ``mtime``, what its worker saw (see appspec.file_stamps), or from now."""
        if path in self.watched or path.startswith(self._ignored_prefixes):
            return
        if mtime is not None:
            self.watched[path] = mtime
            return
        try:
            self.watched[path] = os.stat(path).st_mtime
        except OSError:
            self.watched[path] = -1.0

    def _check_files(self) -> None:
        """Reload once changed files have held still for SETTLE: an editor or a copy that
        writes in steps would otherwise start workers on a half-written file."""
        changed = []
        for path, seen in list(self.watched.items()):
            try:
                mtime = os.stat(path).st_mtime
            except OSError:
                mtime = -1.0
            if mtime != seen:
                self.watched[path] = mtime
                changed.append(path)
        if changed:
            self.settling.extend(p for p in changed if p not in self.settling)
        elif self.settling:
            first, count = self.settling[0], len(self.settling)
            self.settling = []
            more = f" (and {count - 1} more)" if count > 1 else ""
            self._reload(f"{first} changed{more}")


def _json(payload: str) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return None


def _stamps(data: Any) -> dict[str, float | None]:
    """A worker's ``{path: mtime}``; a bare list of paths (mtime unknown) is accepted too."""
    if isinstance(data, dict):
        return {p: float(m) for p, m in data.items()
                if isinstance(p, str) and isinstance(m, (int, float)) and not isinstance(m, bool)}
    if isinstance(data, list):
        return {p: None for p in data if isinstance(p, str)}
    return {}


def _pid_in(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not a running server
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
