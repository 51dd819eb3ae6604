"""Load shedding: the 503 a worker sends instead of a response that would come too late.

The worker decides when (``worker.py``: the length of its queue when a request
is ready, the request's wait when a thread is free for it); this module
measures waits and answers. An answer is one non-blocking send of a few
hundred bytes and a lingering close, from the loop or from the thread that
would have run the app, so a shed request never costs an app call: under
overload the server spends its time on the requests it can still serve in
time, and every client hears at once that it should retry (or go to another
server) instead of timing out.
"""

from __future__ import annotations

import socket
import struct
from collections import deque

from .connection import Connection, Turn
from .http import response as rsp
from .http.parser import HEAD
from .logs import AccessRecord, log
from .proxy import apply_proxy_headers
from .requeststats import SHED_REASONS
from .wsgi import build_environ

STATUS = "503 Service Unavailable"
BODY = b"503 Service Unavailable: the server is busy; retry later\n"
SUMMARY_EVERY = 10.0  # seconds between the error log's lines about shed requests

_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)
_LAST_DATA_RECV = struct.Struct("I")  # tcp_info.tcpi_last_data_recv: ms since data last arrived
_LAST_DATA_RECV_AT = 52
_TCP_INFO_SIZE = 104


def arrival(sock: socket.socket, now: float) -> float:
    """When the request's last bytes reached the kernel, on the ``time.monotonic`` clock.

    A request can wait before the worker reads it: in the listener's accept queue
    while every worker is busy, or, inline, in its socket while another request runs.
    Linux keeps the time since a TCP connection last received data (a handshake
    counts), in milliseconds counted by the kernel's clock tick; elsewhere it is ``now``.
    """
    try:
        if sock.family in _TCP_FAMILIES:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
            return now - _LAST_DATA_RECV.unpack_from(info, _LAST_DATA_RECV_AT)[0] / 1000.0
    except (OSError, AttributeError, struct.error):
        pass
    return now


def arrived_now(sock: socket.socket, now: float) -> float:
    """``arrival`` for a worker that bounds no wait: no system call."""
    return now


class Shedder:
    """Writes the 503s of one worker; ``shed`` may run on the loop and on pool threads at once."""

    def __init__(self, retry_after: int, server_header: str) -> None:
        self.retry_after = str(retry_after)
        self.server_header = server_header
        self._noted: deque[str] = deque()  # reasons not yet counted (appends are atomic)
        self._counts = dict.fromkeys(SHED_REASONS, 0)  # since the last summary line
        self._next_summary = 0.0

    def answer(self, method: str) -> tuple[bytes, list[tuple[str, str]], int]:
        """(the bytes to send, the headers for the access log, body bytes) for a ``method`` request."""
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(BODY))),
                   ("Retry-After", self.retry_after)]
        plan = rsp.ResponsePlan(STATUS, 503, headers, len(BODY), True)
        head = rsp.render_head(plan, rsp.LENGTH, False, self.server_header)
        if method == "HEAD":
            return head, headers, 0
        return head + BODY, headers, len(BODY)

    def shed(self, conn: Connection, reason: str, waited: float) -> Turn:
        """Answer ``conn``'s next request 503 without the app, then close; returns what the
        connection needs next, as ``Connection.serve`` does.

        A request the parser already refused (a malformed one) gets its own 4xx instead,
        which calls no app either: retrying it would not help.
        """
        events = conn.exchange.events
        if not events or events[0][0] != HEAD:
            return conn.serve()
        head = events[0][1]
        data, headers, body = self.answer(head.method)
        state = conn.refuse_queued(data)
        ctx = conn.ctx
        if ctx.stats is not None:
            ctx.stats.note_shed(reason)
        self._noted.append(reason)
        access = ctx.access_log
        if access is not None:
            environ = build_environ(head, conn.base, conn.remote_addr, conn.remote_port, ctx.root_path)
            if conn.trusted_peer:
                apply_proxy_headers(environ, ctx.trusted)
            access.write(AccessRecord(environ, STATUS, headers, body, waited))
        return state

    def summarize(self, pid: int, now: float) -> None:
        """From the worker's loop, at each heartbeat: one error-log line per SUMMARY_EVERY
        while requests are shed, so an operator without an access log hears of it."""
        noted, counts = self._noted, self._counts
        for _ in range(len(noted)):
            counts[noted.popleft()] += 1
        total = sum(counts.values())
        if now < self._next_summary or not total:
            return
        self._next_summary = now + SUMMARY_EVERY
        log.warning("worker %d shed %d request(s) with 503: %d with its queue full (--max-queue), "
                    "%d that waited too long (--max-queue-wait)", pid, total, counts["queue"],
                    counts["wait"])
        self._counts = dict.fromkeys(SHED_REASONS, 0)
