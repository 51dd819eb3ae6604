"""A worker process: adopt the listeners, load the app, accept and serve until told to stop.

One selector watches the listeners, the master's channel, a wake-up pipe
(signals, and pool jobs that closed or took the backlog's turn) and every
connection that is idle or still sending its request head; pool threads put
kept-alive connections back in it themselves. Requests run inline with
``--threads 1``; with a pool, inline too while the pool is idle (a stand-in
thread takes the loop over from a slow one: see _serve_inline), and on the pool
otherwise. Either way a connection reaches the app only once its whole head has
arrived. The listeners are watched only while
there is room to serve another connection, so a busy worker leaves new clients
to its siblings; a pool's next free thread takes the backlog's turn first.

Load shedding (``--max-queue``, ``--max-queue-wait``): a request is answered
503 instead of being queued when the worker's queue is full, and instead of
being served when it has waited too long, without reaching the app (see
``shedding``); while its queue is full the worker stops accepting. With a pool
the queue is the requests handed to it that no thread has taken yet. Inline, it
is the requests found ready in one pass of the loop (one ``select``): they run
one after another, so the k-th waits behind k-1 others.
"""

from __future__ import annotations

import errno
import gc
import os
import random
import resource
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from _thread import LockType
from collections import deque
from collections.abc import Callable, Mapping
from enum import IntEnum
from queue import SimpleQueue
from typing import Any

from . import channel
from .appspec import AppSpec, file_stamps, loaded_module_files
from .channel import EXIT_APP_LOAD_FAILED, EXIT_OK, EXIT_TIMED_OUT, send_line
from .config import Config
from .connection import CLOSED, READY, WAIT, Connection, ServerContext, Turn
from .heap import keep_freed_memory
from .hooks import request_hooks
from .http.parser import Limits
from .inline_watch import inline_watch
from .listeners import Listener
from .logs import AccessLog, format_exception_line, log, reopen_logs
from .proxy import TrustedProxies
from .readiness import read_readiness
from .requeststats import RequestStats
from .shedding import Shedder, arrival, arrived_now
from .signals import WORKER_IGNORED, set_process_title
from .wsgi import base_environ

_WAKE = object()


class Handback(IntEnum):
    """What a pool thread reports in ``done`` besides a connection's Turn (so never 0-2)."""

    REARMED = 3  # it put the kept-alive connection back in the selector itself
    ADOPTED = 4  # the thread that took the backlog's turn accepted a client to serve


REARMED, ADOPTED = Handback.REARMED, Handback.ADOPTED
_CONTROL = object()
ACCEPT_BATCH = 64  # inline mode: connections taken per wake-up, so a burst is not accepted one per round
DRAIN_QUIET = 1.0  # draining: a kept-alive connection quiet this long is closed (capped by --keepalive)
DRAIN_SWEEP = 0.1
PYTHON_SWITCH_INTERVAL = 0.005  # sys.getswitchinterval() until something sets it
# Inline serving with a pool: the stand-in checks this often while requests are served
# inline, and takes the loop over from one still running at the next check; requests then
# go to the pool for a while, from INLINE_BACKOFF_MIN doubling up to INLINE_BACKOFF_MAX
# while takeovers come less than INLINE_BACKOFF_RESET apart. It sleeps once none ran inline
# for STAND_IN_QUIET.
STAND_IN_POLL = 0.002
INLINE_BACKOFF_MIN = 0.05
INLINE_BACKOFF_MAX = 5.0
INLINE_BACKOFF_RESET = 10.0
STAND_IN_QUIET = 1.0
STATS_EVERY = 1.0  # --metrics-bind: request counters go to the master at most this often


class Worker:
    def __init__(self, config: Config, app_spec: AppSpec, listeners: list[Listener],
                 control: socket.socket, index: int, generation: int) -> None:
        self.config = config
        self.app_spec = app_spec
        self.listeners = listeners
        self.control = control
        self.index = index
        self.generation = generation
        self.pid = os.getpid()
        self.sel = read_readiness()
        # The selector's keys by fd, read per request.
        self.registered: Mapping[Any, selectors.SelectorKey] = self.sel.keys
        self.conns: dict[int, Connection] = {}  # registered in the selector, by fd
        # The pool's work queue, in arrival order: connections with a complete request, and
        # now and then a Listener, the token of a turn for clients still in the kernel
        # backlog (see _on_listener). Idle threads take the next item themselves, without a
        # round trip through this loop; finished items come back through ``done`` (see
        # _take_done).
        self.jobs: SimpleQueue = SimpleQueue()
        self.in_pool = 0  # connections handed to the pool and not yet back (loop thread only)
        self.accept_queued = False
        self.turn: Listener | None = None  # the backlog's turn, until a pool thread claims it
        self.done: deque[tuple[Connection | Listener, int]] = deque()
        self.done_lock = threading.Lock()
        self.unwatched: set[Connection] = set()  # REARMED but not registered yet: see _pool_loop
        # Handed to the pool from the selector and still registered there: see _on_lent.
        self.lent: set[Connection] = set()
        self.threads: list[threading.Thread] = []
        # Inline serving with a pool (see _serve_inline): the loop runs under ``loop_lock``;
        # ``may_inline`` is False while the stand-in runs it.
        self.loop_lock = threading.Lock()
        self.may_inline = config.threads > 1
        self.inline_conn: Connection | None = None  # the one served inline now, if any
        self.inline_lent = False  # the stand-in took the loop over and lent inline_conn
        self.inline_after = 0.0  # after a takeover, requests go to the pool until then
        self.loop_wanted = False
        self.loop_over = False
        self.hold: Any = None  # the lock a pool thread is parked on during a takeover
        self.main_thread = threading.get_ident()
        self.watch = inline_watch(STAND_IN_POLL, STAND_IN_QUIET, _thread_cpu_clock(self.main_thread))
        self.inline_begin, self.inline_end = self.watch.begin, self.watch.end  # per request: no lookups
        self.inline_backoff = INLINE_BACKOFF_MIN
        self.last_takeover = 0.0
        self.ctx: ServerContext | None = None
        self.draining = False
        self.drain_deadline = 0.0
        self.retire_sent = False
        self.server_stopping = False  # the master said the whole server stops (not a reload)
        self.control_open = True
        self.reopen_requested = False
        self.listening = False
        self.reported_modules = 0
        self.accept_paused_until = 0.0
        self.beat_every = 1.0
        self.next_beat = 0.0
        self.next_stats = 0.0
        self.accepted = 0  # connections this worker took (loop thread only: see _take_done)
        # Load shedding. ``shedding``: a pool's queue is at --max-queue, the listeners are not
        # watched and threads wake the loop as they finish. ``ready_at``: with --max-queue-wait,
        # when each request handed to the pool was ready (loop writes, threads pop).
        # ``pass_queue``: inline with shedding, the requests this pass of the loop found ready
        # and when they were, and ``pass_listeners`` the listeners it found readable.
        self.max_queue = config.max_queue
        self.max_wait = config.max_queue_wait
        self.shedder: Shedder | None = None
        self.shedding = False
        self.ready_at: dict[Connection, float] = {}
        self.arrival = arrival if self.max_wait else arrived_now
        shedding_on = self.max_queue is not None or self.max_wait > 0
        self.pass_queue: list[tuple[Connection, float]] | None = \
            [] if shedding_on and config.threads == 1 else None
        self.pass_listeners: list[Listener] = []
        jitter = config.max_requests_jitter
        self.max_requests = config.max_requests + (random.randint(0, jitter) if jitter else 0) \
            if config.max_requests else 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- start -------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        self.control.setblocking(False)
        _raise_fd_limit(self.config.worker_connections + 64)
        keep_freed_memory()
        set_process_title(f"sharedsock: worker [{self.config.proc_name or self.app_spec.name}]")
        # Before the app loads, and only over Python's own value: an app that sets its own at
        # import keeps it, also when it was imported in the master (--preload, serve(app)).
        if self.config.threads > 1 and sys.getswitchinterval() == PYTHON_SWITCH_INTERVAL:
            sys.setswitchinterval(self.config.switch_interval)
        try:
            app = self.app_spec.load()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            self._report_load_error(exc)
            return EXIT_APP_LOAD_FAILED
        # What the app built at import lives as long as the worker: full collections need
        # not walk it again and again (with --preload the master froze it already).
        gc.freeze()
        config = self.config
        access = AccessLog(config.access_log, config.access_log_format) if config.access_log else None
        self.ctx = ServerContext(
            app,
            limits=Limits(config.limit_request_line, config.limit_request_fields,
                          config.limit_request_field_size, config.limit_request_body),
            keepalive=config.keepalive,
            header_timeout=config.header_timeout,
            body_timeout=config.body_timeout,
            min_body_rate=config.min_body_rate,
            root_path=config.root_path,
            server_header=config.server_header,
            trusted=TrustedProxies(config.forwarded_allow_ips, config.forwarded_headers),
            proxy_allowed=TrustedProxies(config.proxy_allow_ips) if config.proxy_protocol else None,
            access_log=access,
            multithread=config.threads > 1,
            multiprocess=config.workers > 1 or config.reload,
        )
        self.ctx.pre_request, self.ctx.post_request = request_hooks(self.app_spec)
        if config.metrics_bind:
            self.ctx.stats = RequestStats(threaded=config.threads > 1)
        self._access = access
        if config.max_queue is not None or config.max_queue_wait:
            self.shedder = Shedder(config.retry_after, config.server_header)
        self.environ_bases = {
            listener.sock.fileno(): base_environ(
                "localhost" if listener.is_unix else listener.server_name,
                "80" if listener.is_unix else listener.server_port,
                self.ctx.root_path, self.ctx.multithread, self.ctx.multiprocess)
            for listener in self.listeners}
        if config.threads > 1:
            for n in range(config.threads):
                t = threading.Thread(target=self._pool_loop, name=f"sharedsock-pool-{n}", daemon=True)
                t.start()
                self.threads.append(t)
            threading.Thread(target=self._stand_in, name="sharedsock-stand-in", daemon=True).start()
        self.sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self.sel.register(self.control, selectors.EVENT_READ, _CONTROL)
        self._watch_listeners(True)
        send_line(self.control, channel.READY, {"pid": self.pid}, reliable=True)
        self._report_modules()
        log.debug("worker %d ready (generation %d)", self.pid, self.generation)
        self._loop()
        self._shutdown()
        return EXIT_OK

    def _report_load_error(self, exc: BaseException) -> None:
        if isinstance(exc, SystemExit):
            reason = f"the app called sys.exit({exc.code!r}) while loading"
        else:
            from .errors import AppLoadError
            reason = str(exc) if isinstance(exc, AppLoadError) else format_exception_line(exc)
        log.debug("app failed to load:\n%s", "".join(traceback.format_exception(exc)))
        files = loaded_module_files()
        if isinstance(exc, SyntaxError) and exc.filename:
            files.append(exc.filename)
        tb = exc.__traceback__
        while tb is not None:
            files.append(tb.tb_frame.f_code.co_filename)
            tb = tb.tb_next
        send_line(self.control, channel.LOAD_ERROR,
                  {"reason": reason, "files": file_stamps(sorted(set(files)))}, reliable=True)

    def _report_modules(self) -> None:
        if not self.config.reload:
            return
        count = len(sys.modules)
        if count != self.reported_modules:
            self.reported_modules = count
            send_line(self.control, channel.FILES, file_stamps(loaded_module_files()), reliable=True)

    # -- signals -----------------------------------------------------------

    def _install_signals(self) -> None:
        handlers: dict[signal.Signals, Any] = {sig: signal.SIG_IGN for sig in WORKER_IGNORED}
        handlers.update({signal.SIGTERM: self._on_term, signal.SIGQUIT: self._on_quit,
                         signal.SIGUSR1: self._on_usr1, signal.SIGABRT: self._on_abort,
                         signal.SIGCHLD: signal.SIG_DFL})
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        # A forked worker starts with the master's signals held (see launcher.MASTER_SIGNALS):
        # one that arrived since fork() reaches the handlers above now.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, handlers)

    # Handlers record what was asked; the loop, woken by the wake-up fd, does the work.
    # The two exceptions act at once, since the app may hold the only thread for good.

    def _on_term(self, signum, frame) -> None:
        self.draining = True
        if self.ctx is not None:
            self.ctx.draining = True  # a response being written now already says Connection: close
        _wake(self._wake_w)  # the stand-in may run the loop, and have read the signal's byte already

    def _on_usr1(self, signum, frame) -> None:
        self.reopen_requested = True
        _wake(self._wake_w)

    def _on_quit(self, signum, frame) -> None:
        """Immediate stop, even from inside a request: in-flight requests are abandoned."""
        _flush_logs()
        os._exit(EXIT_OK)

    def _on_abort(self, signum, frame) -> None:
        """The master says we are stuck: show where, answer what we can, and go.

        Here and not in the loop: a hung request may hold the only thread."""
        names = {t.ident: t.name for t in threading.enumerate()}
        parts = [f"worker {self.pid} timed out; stacks of every thread:"]
        for ident, stack in sys._current_frames().items():
            parts.append(f"--- thread {names.get(ident, ident)} ---")
            parts.append("".join(traceback.format_stack(stack)).rstrip())
        log.error("\n".join(parts))
        if self.ctx is not None:
            for conn in list(self.ctx.inflight):
                conn.answer_timeout()
        _flush_logs()
        os._exit(EXIT_TIMED_OUT)

    # -- the loop ----------------------------------------------------------

    def _loop(self) -> None:
        config = self.config
        beat_every = min(1.0, config.timeout / 4) if config.timeout else 1.0
        self.beat_every = max(beat_every, 0.05)
        self.sweep_every = max(0.05, min(1.0, config.keepalive / 2 or 1.0, config.header_timeout / 2))
        self.next_sweep = 0.0
        self.loop_lock.acquire()
        pass_once = self._pass
        while pass_once():
            pass

    def _pass(self) -> bool:
        """One turn of the loop; False once the worker is done.

        Run by the thread holding ``loop_lock``: the main thread, or the stand-in
        while the main thread serves a slow request (see _serve_inline).
        """
        now = time.monotonic()
        if now >= self.next_beat:
            self._beat(now)
        if self.reopen_requested:
            self.reopen_requested = False
            reopen_logs(self._access)
        conns = self.conns
        if self.draining:
            if not self.drain_deadline:
                self._begin_drain(now)
                self.sweep_every = min(self.sweep_every, DRAIN_SWEEP)
                self.next_sweep = now
            if (not conns and not self.in_pool) or now >= self.drain_deadline:
                return False
        if now >= self.next_sweep:
            self._sweep(now)
            self.next_sweep = now + self.sweep_every
            if self.accept_paused_until and now >= self.accept_paused_until:
                self.accept_paused_until = 0.0
                self._update_listening()
        timeout = max(0.0, min(self.next_beat, self.next_sweep) - time.monotonic())
        ready = self.sel.ready(timeout)
        if self.done:
            self._take_done()
        for data in ready:
            if type(data) is Connection:
                if conns.get(data.fd) is not data:
                    self._on_lent(data)
                    continue
                state = data.on_readable()
                if state == READY:
                    self._dispatch(data)
                elif state == CLOSED:
                    self._forget(data)
            elif data is _WAKE:
                self._on_wake()
            elif data is _CONTROL:
                self._on_control()
            else:
                self._on_listener(data)
        if self.pass_queue is not None:
            self._run_pass()
        return True

    def _beat(self, now: float) -> None:
        """Tell the master we make progress, with the start of the oldest request in flight
        (so a request hung on a pool thread is seen even while this loop turns)."""
        send_line(self.control, channel.HEARTBEAT, self.ctx.oldest_request_start())
        self.next_beat = now + self.beat_every
        if self.ctx.stats is not None and now >= self.next_stats:
            self.next_stats = now + STATS_EVERY
            self._report_stats(reliable=False)
        if self.shedder is not None:
            self.shedder.summarize(self.pid, now)
        self._report_modules()

    def _report_stats(self, reliable: bool) -> None:
        """Cumulative counts, so a lost line costs nothing: the next one carries it all."""
        conns = self.conns.values()
        report = self.ctx.stats.report(
            accepted=self.accepted, in_flight=len(self.ctx.inflight),
            open=len(conns) + self.in_pool, idle=sum(1 for c in conns if c.between_requests))
        send_line(self.control, channel.STATS, report, reliable=reliable)

    def _on_listener(self, listener: Listener) -> None:
        """New clients are waiting in the backlog.

        With every thread busy, the next thread to finish takes the backlog's
        turn before the queued requests: otherwise keep-alive clients that always
        have a request ready would starve new ones, and a burst of clients would
        be let in one per pass through the queue (seconds, with 64 of them). That
        thread serves one new client at once and the loop accepts as many as
        there are idle threads. So a busy worker takes new clients as fast as its
        threads free up, which also splits a burst evenly between busy siblings.
        Inline (one thread), a burst is taken in one go; with shedding, after the
        requests already ready in this pass (see _run_pass).
        """
        if not self.listening:
            return  # a stale event: this pass filled the queue, or took the worker's last room
        if self.pass_queue is not None:
            self.pass_listeners.append(listener)
            return
        if self.threads and self.in_pool >= self.config.threads:
            if not self.accept_queued:
                self.accept_queued = True
                self.turn = listener
                self.jobs.put(listener)  # the token wakes a thread already waiting for work
                self._watch_listeners(False)
            return
        self._accept_batch(listener)

    def _accept_batch(self, listener: Listener) -> None:
        """Inline, a burst at once. With a pool, only as many as there are idle threads:
        a kept-alive client stays with the worker that accepted it, and a worker that
        took a whole burst would leave its siblings idle for the life of those clients."""
        threads = self.config.threads
        limit = threads - self.in_pool if self.threads else ACCEPT_BATCH
        for _ in range(limit):
            # A SIGTERM that came while an inline request ran stops the batch here.
            if self.draining or self._pass_full() or not self._accept(listener) or not self.listening:
                return
            if self.threads and self.in_pool >= threads:
                return  # the stand-in filled the pool while this thread served one inline

    def _open(self, listener: Listener) -> Connection | None:
        """The next client from the backlog, None if it is empty; other failures raise OSError."""
        try:
            sock, peer = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return None
        return Connection(sock, peer, self.environ_bases[listener.sock.fileno()], self.ctx,
                          listener.is_unix)

    def _accept(self, listener: Listener) -> bool:
        try:
            conn = self._open(listener)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                # Out of descriptors or memory: leave the backlog to siblings for a moment
                # instead of spinning on a listener that stays readable.
                log.error("accept() failed on %s: %s; pausing accepts for 1s", listener.url, exc)
                self._watch_listeners(False)
                self.accept_paused_until = time.monotonic() + 1.0
            else:
                log.error("accept() failed on %s: %s", listener.url, exc)
            return False
        if conn is None:
            return False
        self.accepted += 1
        # The request has often arrived with the connection: serve it before paying for a
        # selector registration that a close-after-response would undo at once.
        state = conn.on_readable()
        if state == READY:
            if self.threads:
                if self._queue_full():
                    state = self.shedder.shed(conn, "queue", 0.0)
                elif not self.in_pool and self.may_inline \
                        and (not self.inline_after or time.monotonic() >= self.inline_after):
                    self._serve_inline(conn, watched=False)
                    state = CLOSED  # booked already
                else:
                    self._to_pool(conn, self.arrival(conn.sock, time.monotonic()))
                    state = CLOSED  # the pool owns it now
            elif self.pass_queue is not None:
                self.pass_queue.append((conn, self.arrival(conn.sock, time.monotonic())))
                state = WAIT  # watched like any other connection until _run_pass serves it
            else:
                state = conn.serve()
                self._after_request()
        if state == WAIT:
            self._watch(conn)
        if len(self.conns) + self.in_pool >= self.config.worker_connections \
                and not self._evict_idle():
            self._watch_listeners(False)
        return True

    def _dispatch(self, conn: Connection) -> None:
        if not self.threads:
            if self.pass_queue is not None and not self.draining:
                self.pass_queue.append((conn, self.arrival(conn.sock, time.monotonic())))
                return
            state = conn.serve()
            if state == CLOSED:
                self._forget(conn)
            self._after_request()
            return
        if self.max_queue is not None and self._queue_full():
            if self.shedder.shed(conn, "queue", 0.0) == CLOSED:
                self._forget(conn)
            return
        if not self.in_pool and self.may_inline \
                and (not self.inline_after or time.monotonic() >= self.inline_after):
            self._serve_inline(conn, watched=True)
            return
        # It stays registered (see _on_lent): the thread that serves a kept-alive request
        # then hands it back without a system call.
        del self.conns[conn.fd]
        self.lent.add(conn)
        self._to_pool(conn, time.monotonic() if self.max_wait else 0.0)

    def _serve_inline(self, conn: Connection, watched: bool) -> None:
        """With the pool idle, the loop's own thread serves the request: no hand-off.

        Handing a request to an idle pool thread costs a wake-up, a context switch
        and an interpreter-lock transfer each way, which is what ``--threads`` cost
        per request. The loop is left to the stand-in (see _stand_in), which takes
        it over if the request turns out slow, so other clients wait for it at most
        two STAND_IN_POLLs (and the interpreter lock's switch interval). Taking over,
        it books the request as the pool's and lends its connection if ``watched``
        (see _lead_for_main); until then the request costs the loop's bookkeeping
        what it would without threads.
        """
        self.inline_conn = conn
        self.inline_begin()
        lock = self.loop_lock
        lock.release()
        state = conn.serve()
        self.inline_end()
        if not lock.acquire(False) and self._take_loop_back():
            self.inline_conn = None
            self._after_takeover(conn, state, watched)
        else:
            self.inline_conn = None
            if watched:
                if state == CLOSED:
                    self._forget(conn)
            elif state == WAIT:
                self._watch(conn)
        self._after_request()

    def _after_takeover(self, conn: Connection, state: Turn, watched: bool) -> None:
        """The loop is back from the stand-in, which booked the inline request as the pool's."""
        self.in_pool -= 1
        if self.inline_lent:
            self.inline_lent = False
            self.lent.discard(conn)
            if state == WAIT and not conn.closed:
                self._watch(conn)
            else:
                self._drop_key(conn)
        elif watched:
            if state == CLOSED:
                self._forget(conn)
        elif state == WAIT:
            self._watch(conn)
        if not self.listening:
            self._update_listening()

    def _take_loop_back(self) -> bool:
        """The stand-in has the loop: ask for it back, then free the pool thread it parked.

        False if it had only held the lock to look, and let go without taking over
        (the request ended between its check and the lock): nothing was booked then.
        """
        self.loop_wanted = True
        _wake(self._wake_w)
        self.loop_lock.acquire()
        self.loop_wanted = False
        hold = self.hold
        if hold is None:
            return False
        self.hold = None
        hold.release()
        # Requests this slow belong on the pool: leave them there for a while, longer each time
        # it happens again soon (a lone pause, a collection, costs little).
        now = time.monotonic()
        if now - self.last_takeover > INLINE_BACKOFF_RESET:
            self.inline_backoff = INLINE_BACKOFF_MIN
        else:
            self.inline_backoff = min(self.inline_backoff * 2, INLINE_BACKOFF_MAX)
        self.last_takeover = now
        self.inline_after = now + self.inline_backoff
        return True

    def _stand_in(self) -> None:
        """Takes over the loop while the main thread serves a slow request inline.

        It watches only while requests are being served inline, and sleeps through
        quiet spells until the next one begins (see ``inline_watch``): polling all the
        time would cost more. A request still running a whole poll later is slow.
        Taking over, it first parks one pool thread for the request still running
        inline, so at most --threads requests run at once.
        """
        watch = self.watch
        while not self.loop_over:
            slow = watch.wait()
            if slow is None:  # stopped: the loop is over
                break
            seq, waited = slow
            if not self.loop_over and self.loop_lock.acquire(False):
                if watch.still(seq):
                    self._lead_for_main(waited)
                else:  # that request ended, and the lock was free before the next began
                    self.loop_lock.release()

    def _lead_for_main(self, waited: float) -> None:
        """The stand-in, holding ``loop_lock``: run the loop until the main thread wants it.

        Should the loop end meanwhile (the drain's deadline passed, the request still
        runs), the worker exits from here, as the main thread would have; a failure in
        the loop ends the worker too, so the master replaces it.
        """
        log.debug("worker %d: a request has run inline for over %.1f ms; the stand-in takes over "
                  "the loop", self.pid, waited * 1000)
        self.in_pool += 1  # the request still running inline
        conn = self.inline_conn
        if conn is not None and self.conns.get(conn.fd) is conn:
            del self.conns[conn.fd]  # the main thread's until it is done (see _on_lent)
            self.lent.add(conn)
            self.inline_lent = True
        hold = threading.Lock()
        hold.acquire()
        self.hold = hold
        self.jobs.put(hold)
        self.may_inline = False
        self.ctx.loop_thread = threading.get_ident()
        try:
            while not self.loop_wanted:
                if not self._pass():
                    self._shutdown()
                    os._exit(EXIT_OK)
        except BaseException:
            log.exception("worker %d: the loop failed on the stand-in thread", self.pid)
            _flush_logs()
            os._exit(1)  # as a worker whose main thread raised (launcher._run_forked)
        self.ctx.loop_thread = self.main_thread
        self.may_inline = True
        self.loop_lock.release()

    def _to_pool(self, conn: Connection, ready_at: float) -> None:
        if self.max_wait:
            self.ready_at[conn] = ready_at
        self.in_pool += 1
        self.jobs.put(conn)
        if self.max_queue is not None and not self.shedding and self._queue_full():
            self._update_listening()

    def _queue_full(self) -> bool:
        """A pool's queue (requests handed to it beyond its threads) is at --max-queue."""
        return self.max_queue is not None and self.in_pool - self.config.threads >= self.max_queue

    def _pass_full(self) -> bool:
        """Inline: this pass has found one request to run and --max-queue to wait behind it."""
        return self.max_queue is not None and self.pass_queue is not None \
            and len(self.pass_queue) > self.max_queue

    def _run_pass(self) -> None:
        """Inline with shedding: accept (unless the pass is full already), then answer in turn
        the requests this pass found ready: beyond --max-queue with 503 at once, later any
        that has waited longer than --max-queue-wait, and the rest by the app."""
        queue = self.pass_queue
        for listener in self.pass_listeners:
            if self.listening:
                self._accept_batch(listener)
        self.pass_listeners.clear()
        if not queue:
            return
        batch = queue[:]
        queue.clear()
        shed = self.shedder.shed
        if self.max_queue is not None and len(batch) > self.max_queue + 1:
            now = time.monotonic()
            for conn, ready_at in batch[self.max_queue + 1:]:
                if shed(conn, "queue", now - ready_at) == CLOSED:
                    self._forget(conn)
            del batch[self.max_queue + 1:]
        for conn, ready_at in batch:
            if conn.closed:
                self._forget(conn)
                continue
            waited = time.monotonic() - ready_at
            if self.max_wait and waited > self.max_wait:
                state = shed(conn, "wait", waited)
            else:
                state = conn.serve()
            if state == CLOSED:
                self._forget(conn)
            self._after_request()

    def _pool_loop(self) -> None:
        jobs, done, wake = self.jobs, self.done, self._wake_w
        watched = self.registered
        lent = self.lent
        done_lock = self.done_lock
        serve = self._serve_in_time if self.max_wait else Connection.serve
        conn: Connection | None
        while True:
            turn = self.turn
            # Shedding, the queued requests go first: the backlog is for siblings with room.
            if turn is not None and not self.shedding and self._claim_turn(turn):
                state, conn = self._serve_turn(turn, serve)
            else:
                item = jobs.get()
                while type(item) is LockType:
                    # Parked while the request the stand-in took over from runs; then, as a
                    # thread that has just finished one, the queue before the backlog.
                    item.acquire()
                    item.release()
                    item = jobs.get()
                if type(item) is Connection:
                    conn = item
                    state = serve(conn)
                elif item is None:
                    return
                elif self._claim_turn(item):
                    state, conn = self._serve_turn(item, serve)
                else:
                    continue  # a thread took this turn before its token came up
            if conn is None:
                continue
            if state == WAIT and not conn.closed and not self.draining:
                # A kept-alive connection goes back to the selector from here, and the
                # loop reads ``done`` when it next wakes, which is at the latest when
                # this client's next request arrives: no wake-up, and no second thread
                # wanting the GIL, per request. ``done`` first: see _take_done.
                with done_lock:
                    done.append((conn, REARMED))
                    lent.discard(conn)
                    key = watched.get(conn.fd)
                    if key is None or key.data is not conn:
                        self._rewatch(conn, key)
                if self.shedding:
                    _wake(wake)  # the loop counts free room only from ``done``: let it listen again
                continue
            lent.discard(conn)
            done.append((conn, state))
            _wake(wake)

    def _serve_turn(self, listener: Listener, serve: Callable[[Connection], Turn]
                    ) -> tuple[Turn, Connection | None]:
        """The backlog's turn: this thread serves the first client itself, so a new client
        waits for the queue once, not twice; the loop accepts the rest."""
        try:
            conn = self._open(listener)
        except OSError:
            conn = None  # the loop meets the same error and deals with it
        self.done.append((listener, ADOPTED if conn is not None else WAIT))
        _wake(self._wake_w)
        if conn is None:
            return WAIT, None
        state = conn.on_readable()
        if state == READY:
            if self.max_wait:
                self.ready_at[conn] = arrival(conn.sock, time.monotonic())
            state = serve(conn)
        return state, conn

    def _rewatch(self, conn: Connection, key: selectors.SelectorKey | None) -> None:
        """A pool thread, under ``done_lock``: watch a kept-alive connection the selector lost."""
        if key is None:
            try:
                self.sel.register(conn.fd, selectors.EVENT_READ, conn)
            except (ValueError, OSError) as exc:
                log.error("could not watch connection %d again: %s", conn.fd, exc)
                conn.close()
        else:
            # The fd was a connection's that has just been closed and not yet unregistered,
            # and this thread's accept got the number again: the loop registers this one
            # once it has let go of the old one.
            self.unwatched.add(conn)
            _wake(self._wake_w)

    def _serve_in_time(self, conn: Connection) -> Turn:
        """A pool thread with --max-queue-wait: a request that waited too long gets a 503."""
        now = time.monotonic()
        waited = now - self.ready_at.pop(conn, now)
        if waited > self.max_wait:
            return self.shedder.shed(conn, "wait", waited)
        return conn.serve()

    def _claim_turn(self, listener: Listener) -> bool:
        """Exactly one thread gets each turn: the first to look, or the one its token reaches."""
        with self.done_lock:
            if self.turn is not listener:
                return False
            self.turn = None
        return True

    def _on_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        self._take_done()

    def _take_done(self) -> None:
        """Book what the pool finished.

        A REARMED connection is in the selector again: its thread queues the entry and
        registers it under ``done_lock``. So once select() has reported an event for
        it, the entry is here (the loop takes ``done`` after each select() and before
        handling events), and an entry taken under the lock is registered already, so
        closing its connection here cannot race with the registration.
        """
        done = self.done
        with self.done_lock:
            batch = [done.popleft() for _ in range(len(done))]  # appends may race: never clear()
        conns, unwatched = self.conns, self.unwatched
        turns: list[tuple[Listener, int]] = []
        for item, state in batch:
            if state == REARMED and not item.closed and not (unwatched and item in unwatched):
                # Kept alive, and registered by its thread: nearly always. (Only connections
                # come back REARMED.)
                conns[item.fd] = item  # type: ignore[assignment]
            elif type(item) is not Connection:
                turns.append((item, state))
            elif state == REARMED:
                if item in unwatched:
                    unwatched.discard(item)
                    self._watch(item)
                else:
                    self._drop_key(item)  # closed
            elif state == WAIT and not item.closed:
                self._watch(item)
            else:
                self._drop_key(item)
        self.in_pool -= len(batch) - len(turns)
        # The backlog's turns came up in the queue: taken once every connection is booked, so
        # the room they see is exact.
        for listener, state in turns:
            if state == ADOPTED:
                self.in_pool += 1  # its own entry follows when the thread is done with it
                self.accepted += 1
            self.accept_queued = False
            self._update_listening()
            if self.listening:
                self._accept_batch(listener)
        # Once per batch: it looks at the time and the count, not at each request.
        self._after_request()
        self._update_listening()

    def _watch(self, conn: Connection) -> None:
        """The loop owns ``conn`` from now on and watches it, unless it is closed.

        A connection the pool closed stays registered until its entry in ``done``
        is taken, and its fd number may be a new connection's already: a key that
        is not ``conn``'s is such a leftover (two open sockets never share a number).
        """
        if conn.closed:
            return
        key = self.registered.get(conn.fd)
        if key is None or key.data is not conn:
            try:
                if key is not None:
                    self.sel.unregister(conn.fd)
                self.sel.register(conn.fd, selectors.EVENT_READ, conn)
            except (KeyError, ValueError, OSError) as exc:
                log.error("could not watch connection %d: %s", conn.fd, exc)
                conn.close()
                return
        self.conns[conn.fd] = conn

    def _drop_key(self, conn: Connection) -> None:
        """A connection the pool closed or gave up: its registration, if still there, goes.

        Under ``done_lock``: the connection may be closed, and a pool thread may have
        accepted a client on its fd number since. Unregistering takes the number out of
        the epoll set, so it must not fall between that thread's look at the keys and its
        registration (see _rewatch), or the new client is never heard from again.
        """
        with self.done_lock:
            self._drop_key_held(conn)

    def _drop_key_held(self, conn: Connection) -> None:
        key = self.registered.get(conn.fd)
        if key is not None and key.data is conn:
            self.sel.unregister(conn.fd)

    def _on_lent(self, conn: Connection) -> None:
        """An event for a connection that is not the loop's: a pool thread has it, or has
        just handed it back (its entry in ``done`` not taken yet), or closed it.

        A connection handed to the pool stays registered, so that a kept-alive one
        comes back without unregistering and registering again. Its events belong to
        the thread serving it, and this loop must not read it; but the selector reports
        them (level-triggered) until someone reads, so the first one unregisters it and
        the thread registers it again when it is done. A connection already handed
        back is left alone: its event comes again in the next pass, once it is in
        ``conns``.
        """
        with self.done_lock:
            if conn in self.lent or conn.closed:
                self.lent.discard(conn)
                self._drop_key_held(conn)

    def _on_control(self) -> None:
        if not self.control_open:
            return
        try:
            data = self.control.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if channel.STOP.encode() + b"\n" in data:
            self.server_stopping = True
        if not data:  # the master is gone: finish what we have and leave
            log.warning("worker %d lost its master; draining", self.pid)
            self.sel.unregister(self.control)
            self.control_open = False
            self.draining = True

    def _after_request(self) -> None:
        now = time.monotonic()
        if now >= self.next_beat:  # inline, a batch of requests may keep the loop from turning
            self._beat(now)
        if self.max_requests and not self.retire_sent and self.ctx.requests_served >= self.max_requests:
            self.retire_sent = True
            log.info("worker %d served %d requests; asking to be replaced", self.pid,
                     self.ctx.requests_served)
            send_line(self.control, channel.RETIRE, reliable=True)

    def _sweep(self, now: float) -> None:
        for conn in [c for c in self.conns.values() if c.deadline <= now]:
            self._unregister(conn)
            conn.expire()
        if self.draining:
            self._close_quiet(now)

    def _close_quiet(self, now: float) -> None:
        """Draining: each kept-alive connection is closed once it has been quiet for a moment.

        A client that keeps its connection busy sends its next request within that
        moment and gets it answered with ``Connection: close``; closing at once would
        reset requests already on their way (or in the kernel's buffer).
        """
        quiet = min(DRAIN_QUIET, self.config.keepalive)
        conns = self.conns
        for conn in [c for c in conns.values() if c.between_requests and now - c.idle_since >= quiet]:
            if conns.get(conn.fd) is not conn:
                continue  # handed to the pool while one of these was served inline
            state = conn.close_if_quiet()
            if state == CLOSED:
                self._forget(conn)
            elif state == READY:
                self._dispatch(conn)

    def _unregister(self, conn: Connection) -> None:
        fd = conn.fd
        if self.conns.get(fd) is conn:
            del self.conns[fd]
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass
            if not self.draining:
                self._update_listening()

    def _forget(self, conn: Connection) -> None:
        self._unregister(conn)
        conn.close()

    def _evict_idle(self) -> bool:
        """At capacity, the longest-idle keep-alive connection makes room for a new client:
        an idle client can reconnect, a client that was never served would only wait."""
        idle = [c for c in self.conns.values() if c.environ is not None and c.is_idle]
        if not idle:
            return False
        self._forget(min(idle, key=lambda c: c.deadline))
        return True

    def _update_listening(self) -> None:
        held = len(self.conns) + self.in_pool
        shedding = self._queue_full()
        if shedding != self.shedding:
            self.shedding = shedding
            log.debug("worker %d: %s", self.pid, "queue full (--max-queue), not accepting" if shedding
                      else "queue below --max-queue, accepting again")
        room = (not self.draining and not self.accept_queued and not self.shedding
                and time.monotonic() >= self.accept_paused_until
                and (held < self.config.worker_connections
                     or any(c.environ is not None and c.is_idle for c in self.conns.values())))
        if room != self.listening:
            self._watch_listeners(room)

    def _watch_listeners(self, on: bool) -> None:
        if on == self.listening:
            return
        for listener in self.listeners:
            if on:
                self.sel.register(listener.sock, selectors.EVENT_READ, listener)
            else:
                self.sel.unregister(listener.sock)
        self.listening = on

    # -- stop --------------------------------------------------------------

    def _begin_drain(self, now: float) -> None:
        self.drain_deadline = now + self.config.graceful_timeout
        self.ctx.draining = True
        self._watch_listeners(False)
        self.accept_queued = False
        self.turn = None
        self._on_control()  # the master says "stop" before it sends SIGTERM
        if self.server_stopping:
            self._take_backlog()
        for listener in self.listeners:
            listener.sock.close()
        # A fresh connection (environ still None) was accepted for a request on its way and
        # is served; kept-alive ones are closed as they fall quiet (see _close_quiet).
        log.debug("worker %d draining %d connection(s)", self.pid, len(self.conns) + self.in_pool)

    def _take_backlog(self) -> None:
        """The server stops: clients already queued in the kernel reached it and must be served.

        The master has made the listeners refuse new clients (listeners.stop_new_connections)
        while this worker and its siblings take the queued ones. Closing a listener with
        clients still queued would reset them.
        """
        room = self.config.worker_connections - len(self.conns) - self.in_pool
        for listener in self.listeners:
            # Only those queued now: taken first and served after, so a stream of new
            # clients cannot keep a draining worker accepting.
            while room > 0:
                try:
                    conn = self._open(listener)
                except OSError:
                    break
                if conn is None:
                    break
                self.accepted += 1
                room -= 1
                self._watch(conn)

    def _shutdown(self) -> None:
        self.loop_over = True
        self.watch.stop()
        for conn in list(self.conns.values()):
            conn.close()
        self.conns.clear()
        if self.ctx.stats is not None and self.control_open:
            self._report_stats(reliable=True)  # the requests since the last beat count too
        for _ in self.threads:
            self.jobs.put(None)
        _flush_logs()


def _wake(fd: int) -> None:
    try:
        os.write(fd, b"\0")
    except BlockingIOError:
        pass  # the loop is already awake


def _raise_fd_limit(wanted: int) -> None:
    """Each connection is a descriptor; the common soft limit of 1024 is below the default 1000
    connections plus listeners, logs and the app's own files."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        pass


def _thread_cpu_clock(ident: int) -> int | None:
    """The clock of a thread's CPU time, where the platform has one."""
    try:
        clock = time.pthread_getcpuclockid(ident)
        time.clock_gettime(clock)
    except (AttributeError, OSError):
        return None
    return clock


def _flush_logs() -> None:
    for handler in log.handlers:
        try:
            handler.flush()
        except Exception:
            pass
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
