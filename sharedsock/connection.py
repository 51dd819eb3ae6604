"""One client connection: the socket, the clocks and the app around an ``http.exchange.Exchange``.

The protocol's rules (framing, keep-alive, 100-continue, draining, lingering,
whether the response has started) live in the exchange, which does no I/O;
this module reads and writes the socket, keeps the deadlines, calls the app
and writes the access log.

The worker's selector owns a connection while it is idle, still sending its
request head, or sending a small body; ``serve`` runs (inline or on a pool
thread) once a request is ready and returns whether the connection goes back
to the selector. So a slow or idle client costs a selector slot, not an app
thread, unless its body is too large to hold and must be streamed to the app.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from .errors import ProtocolError
from .http import response as rsp
from .http.exchange import CLOSE, DRAIN, KEEP, LINGER, STARTED, Exchange, Turn
from .http.parser import Limits, RequestHead
from .logs import AccessLog, AccessRecord, log
from .proxy import TrustedProxies, apply_proxy_headers
from .proxy_protocol import ProxyHeaderError, ProxyHeaderReader
from .requeststats import RequestStats
from .sockio import READ_SIZE, ClientGone, ClientTimeout, recv_some, send_all, send_file, send_pair
from .tls import TLSError, TLSSocket, client_subject, https_base
from .wsgi import EMPTY_INPUT, FileWrapper, InputStream, ReceivedBody, build_environ

# What serve() and on_readable() report to the worker loop (Turn is owned by http.exchange).
WAIT, READY, CLOSED = Turn.WAIT, Turn.READY, Turn.CLOSED

_JOIN_MAX = 16384  # a first body piece up to this size is joined to the head: cheaper than sendmsg
LINGER_TIME = 2.0  # after a close with input possibly unread: how long to keep discarding it

__all__ = ["CLOSED", "READY", "WAIT", "Connection", "ServerContext", "Turn"]


class ServerContext:
    """Everything connections of one worker share."""

    def __init__(self, app: Callable, *, limits: Limits, keepalive: float, header_timeout: float,
                 body_timeout: float, min_body_rate: int, root_path: str, server_header: str,
                 trusted: TrustedProxies, access_log: AccessLog | None, multithread: bool,
                 multiprocess: bool, proxy_allowed: TrustedProxies | None = None) -> None:
        """``proxy_allowed``: with --proxy-protocol, the peers that may send a PROXY header."""
        self.app = app
        self.limits = limits
        self.keepalive = keepalive
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.min_body_rate = min_body_rate
        self.root_path = root_path.rstrip("/")
        self.server_header = server_header
        self.trusted = trusted
        self.proxy_allowed = proxy_allowed
        self.access_log = access_log
        self.multithread = multithread
        self.multiprocess = multiprocess
        self.draining = False
        # The thread running the worker's loop: the only one that drives TLS handshakes.
        self.loop_thread = threading.get_ident()
        self.requests_served = 0
        self.inflight: dict[Connection, float] = {}
        self.pre_request: Callable[[dict], None] | None = None  # config-file hooks, set at worker start
        self.post_request: Callable[[dict, str], None] | None = None
        self.stats: RequestStats | None = None  # with --metrics-bind only: off costs nothing

    def oldest_request_start(self) -> float:
        starts = list(self.inflight.values())
        return min(starts) if starts else 0.0


class Connection:
    __slots__ = ("sock", "fd", "ctx", "exchange", "base", "remote_addr", "remote_port", "deadline",
                 "trusted_peer", "closed", "environ", "prefetch_cap", "nodelay", "written",
                 "idle_since", "body_waited", "body_received", "tls")

    def __init__(self, sock: socket.socket, peer: Any, base: dict, ctx: ServerContext,
                 is_unix: bool) -> None:
        """``base``: the listener's environ template (``wsgi.base_environ``); shared, never written."""
        sock.setblocking(False)
        self.sock = sock
        self.nodelay = is_unix  # TCP_NODELAY is set when first needed: see before_send
        self.written = False  # anything sent on this socket yet: see before_send
        self.fd = sock.fileno()  # still known after close, so the worker can find its entry
        self.ctx = ctx
        self.exchange = Exchange(ctx.limits, ctx.keepalive > 0, ctx.server_header)
        self.base = base
        if is_unix:
            self.remote_addr = self.remote_port = ""
            self.trusted_peer = ctx.trusted.trusts_unix
        else:
            self.remote_addr, self.remote_port = peer[0], str(peer[1])
            self.trusted_peer = ctx.trusted.trusts(self.remote_addr)
        self.deadline = time.monotonic() + ctx.header_timeout
        self.closed = False
        self.environ: dict | None = None
        self.prefetch_cap = 0.0  # when the grace of a small body being received ends
        self.idle_since = 0.0  # when the last response ended; 0 before the first
        # body_waited (seconds spent waiting for a body: the app's own time is not the client's)
        # and body_received (bytes received meanwhile) are set per request with a body.
        self.tls = type(sock) is TLSSocket
        if self.tls:
            self.sock = cast(socket.socket, TLSHandshakeSocket(self, cast(TLSSocket, sock)))
        if ctx.proxy_allowed is not None:
            _expect_proxy_header(self, is_unix)

    # -- selector side -----------------------------------------------------

    def on_readable(self) -> Turn:
        while True:
            try:
                data = self.sock.recv(READ_SIZE)
            except BlockingIOError:
                return WAIT
            except OSError:
                self.close()
                return CLOSED
            if not data:
                self.close()
                return CLOSED
            if self.exchange.lingering:
                if self.exchange.discard(len(data)) == CLOSED:
                    self.close()
                    return CLOSED
                return WAIT
            state = self.feed(data)
            # A full read of a small body: the rest is nearly always in the kernel already,
            # and taking it now saves a pass through the selector.
            if state != WAIT or len(data) < READ_SIZE or not self.exchange.prefetching:
                return state

    def feed(self, data: bytes) -> Turn:
        """Parse bytes that arrived while the selector owned the connection."""
        exchange = self.exchange
        parser = exchange.parser
        had_partial = parser.in_head
        was_prefetching = exchange.prefetching
        if exchange.receive(data) == READY:
            return READY
        ctx = self.ctx
        if exchange.prefetching:
            if not was_prefetching:
                self._start_prefetch()
            # Each piece of the body must follow the last within --body-timeout, and once
            # the first --body-timeout is over, the body so far must keep --min-body-rate
            # (as _receive_body has it): a trickle cannot hold the slot.
            now = time.monotonic()
            deadline = now + ctx.body_timeout
            if ctx.min_body_rate:
                started = self.prefetch_cap - ctx.body_timeout
                deadline = min(deadline, max(self.prefetch_cap,
                                             started + exchange.prefetched / ctx.min_body_rate))
            self.deadline = deadline
        elif not had_partial and parser.in_head and self.environ is not None:
            # The first byte of a kept-alive request: its head must follow within
            # --header-timeout (of this byte, or of the end of the --keepalive wait if the
            # byte came late). A first request's clock runs from accept and is left alone,
            # and bytes that begin no request (blank lines) move no clock.
            self.deadline = min(time.monotonic(), self.deadline) + ctx.header_timeout
        return WAIT

    def _start_prefetch(self) -> None:
        """The body clock starts with the head; ``prefetch_cap`` is when its grace ends."""
        self.prefetch_cap = time.monotonic() + self.ctx.body_timeout

    def expire(self) -> None:
        """The selector-side deadline passed: idle, lingering, or a request that never finished."""
        exchange = self.exchange
        if not exchange.lingering:
            if exchange.prefetching:
                ctx = self.ctx
                elapsed = time.monotonic() - (self.prefetch_cap - ctx.body_timeout)
                slow = elapsed > ctx.body_timeout and exchange.prefetched < ctx.min_body_rate * elapsed
                reason = "request body too slow" if slow else "request body timeout"
                self._refuse(ProtocolError(408, reason), log_access=True)
            elif exchange.parser.in_head:
                self._refuse(ProtocolError(408, "request head timeout"), log_access=True)
            elif type(self.sock) is TLSHandshakeSocket:
                log.debug("closed TLS connection from %s: no handshake within --header-timeout",
                          self.remote_addr or "(unix)")
        self.close()

    @property
    def is_idle(self) -> bool:
        return self.exchange.idle

    @property
    def between_requests(self) -> bool:
        """Kept alive after a response, with nothing of a next request seen yet."""
        return self.exchange.between_requests

    def close_if_quiet(self) -> Turn:
        """Draining: close a kept-alive connection unless its client has just sent something.

        The client may have sent its next request already; it can sit unread in
        the kernel's buffer, where closing would answer it with a reset. Read
        first: a request found is served (with ``Connection: close``) instead.
        """
        state = self.on_readable()
        if state != WAIT or not self.between_requests:
            return state
        self.close()
        return CLOSED

    # -- serving -----------------------------------------------------------

    def serve(self) -> Turn:
        """Answer every complete request queued on this connection."""
        exchange = self.exchange
        events = exchange.events
        try:
            while events:
                request = exchange.next_request()
                if request is None:
                    break
                if type(request) is RequestHead:
                    end = self._exchange(request)
                    if end != KEEP:
                        return self._end(end)
                else:
                    self._refuse(request, log_access=True)
                    return self._end(LINGER)
        except Exception:  # a bug of ours must cost one connection, never the worker
            log.exception("internal error while serving a connection")
            self.close()
            return CLOSED
        # Even when draining, a connection kept alive stays open: its client may be sending
        # the next request now. The worker closes it once it is quiet (close_if_quiet).
        now = self.idle_since = time.monotonic()
        self.deadline = now + (self.ctx.header_timeout if exchange.parser.in_head else self.ctx.keepalive)
        return WAIT

    def _end(self, end: int) -> Turn:
        """Close after a response; with LINGER, first let unread input arrive and drop it.

        Closing a socket with unread input makes the kernel send a reset, which can
        destroy the response the client has not read yet (RFC 9112 9.6). Shutting
        down our side and discarding input for a moment lets the response arrive.
        """
        if self.closed:
            return CLOSED
        if end != LINGER:
            self.close()
            return CLOSED
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return CLOSED
        self.exchange.linger()
        self.deadline = time.monotonic() + LINGER_TIME
        return WAIT

    def _refuse(self, error: ProtocolError, log_access: bool = False) -> None:
        """Answer a request we will not serve; ``log_access`` for one the app never saw."""
        log.debug("refused request: %s %s", error.status, error.reason)
        data = self.exchange.refusal(error)
        self._send_quietly(data)
        access = self.ctx.access_log
        if log_access and access is not None:
            environ = {"REMOTE_ADDR": self.remote_addr, **self.exchange.parser.request_line_environ()}
            access.write(AccessRecord(environ, f"{error.status} {rsp.REASONS.get(error.status, '')}",
                                      [], len(data) - data.index(b"\r\n\r\n") - 4, 0.0))

    def _exchange(self, head: RequestHead) -> int:
        """One request and its response; returns what becomes of the connection (an End)."""
        ctx = self.ctx
        exchange = self.exchange
        started = time.monotonic()
        ctx.inflight[self] = started
        environ = build_environ(head, self.base, self.remote_addr, self.remote_port, ctx.root_path)
        if self.trusted_peer:
            apply_proxy_headers(environ, ctx.trusted)
        if exchange.body_done:
            environ["wsgi.input"] = EMPTY_INPUT if exchange.body is None \
                else ReceivedBody(exchange.take_body())
        else:
            self.body_waited = 0.0
            self.body_received = 0
            environ["wsgi.input"] = InputStream(self.next_chunk)
        self.environ = environ
        exchange.write = self.write
        result = None
        try:
            try:
                if ctx.pre_request is not None:
                    ctx.pre_request(environ)
                result = ctx.app(environ, exchange.start_response)
                self._send_result(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        except ProtocolError as error:
            data = exchange.error_answer(error)
            if data:
                log.debug("refused request: %s %s", error.status, error.reason)
                self._send_quietly(data)
            self._log_access(started)
            return LINGER
        except (ClientGone, ClientTimeout) as error:
            if isinstance(error, ClientTimeout):  # our decision, so the operator hears of it
                log.info("cut off client %s during %s %s: it %s; %d bytes of the response sent",
                         self.remote_addr or "(unix)", head.method, environ.get("RAW_URI"),
                         error.reason, exchange.sent_before + error.sent)
            else:
                log.debug("client went away during %s %s", head.method, environ.get("RAW_URI"))
            return CLOSE
        except Exception:
            log.exception("error handling %s %s", head.method, environ.get("RAW_URI"))
            data = exchange.crash_answer()
            if data:
                self._send_quietly(data)
            self._log_access(started)
            return exchange.end_after_error()
        finally:
            exchange.write = None
            ctx.inflight.pop(self, None)
            ctx.requests_served += 1
            stats = ctx.stats
            if stats is not None:
                stats.record((exchange.status, head.method, time.monotonic() - started, exchange.sent,
                              exchange.consumed))
            if ctx.post_request is not None:
                ctx.post_request(environ, exchange.status)
        if ctx.access_log is not None:
            self._log_access(started)
        end = exchange.end()
        if end == DRAIN:
            return self._drain()
        return end

    def _log_access(self, started: float) -> None:
        access = self.ctx.access_log
        if access is not None and self.environ is not None:
            exchange = self.exchange
            headers = exchange.plan.headers if exchange.plan is not None else []
            access.write(AccessRecord(self.environ, exchange.status, headers, exchange.sent,
                                      time.monotonic() - started))

    def answer_timeout(self) -> None:
        """Called from the SIGABRT handler: tell a stuck client 504 if we still can."""
        if self.closed:
            return
        data = self.exchange.timeout_answer()
        if not data:
            return
        self._send_quietly(data)
        access = self.ctx.access_log
        if access is not None and self.environ is not None:
            started = self.ctx.inflight.get(self, time.monotonic())
            access.write(AccessRecord(self.environ, "504 Gateway Timeout", [], 0,
                                      time.monotonic() - started))

    def before_send(self, whole: bool) -> None:
        """Turn Nagle's algorithm off before a write it could hold back.

        Nagle delays a small segment only while earlier data is unacknowledged.
        A first response sent whole, in one send(), follows nothing, so a
        connection that carries one request never pays for the setsockopt.
        Anything else (a second response, a streamed body, a 100 Continue
        before the response) turns it off for the rest of the connection.
        """
        if not self.nodelay and (self.written or not whole):
            self.nodelay = True
            try:
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.written = True

    def _send_quietly(self, data: bytes) -> None:
        self.before_send(True)
        try:
            self.sock.send(data)
        except OSError:
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    # -- the request body --------------------------------------------------

    def next_chunk(self) -> bytes | memoryview:
        """``wsgi.input``'s source: the next piece of the body, received as the app reads it."""
        exchange = self.exchange
        if exchange.expecting:
            data = exchange.take_continue()
            if data:
                self.before_send(False)
                send_all(self.sock, data, self.ctx.body_timeout)
        piece = exchange.read_body()
        while piece is None:
            try:
                self._receive_body()
            except ProtocolError as error:
                exchange.body_failed(error)
                raise
            piece = exchange.read_body()
        return piece

    def _receive_body(self) -> None:
        ctx = self.ctx
        start = time.monotonic()
        try:
            data = recv_some(self.sock, ctx.body_timeout)
        except ClientTimeout:
            raise ProtocolError(408, "request body timeout") from None
        if not data:
            raise ClientGone()
        self.body_waited += time.monotonic() - start
        self.body_received += len(data)
        if ctx.min_body_rate and self.body_waited > ctx.body_timeout \
                and self.body_received < ctx.min_body_rate * self.body_waited:
            raise ProtocolError(408, "request body too slow")
        self.exchange.receive_body(data)

    def _drain(self) -> int:
        """Read and drop what the app left unread, so the next request can follow."""
        exchange = self.exchange
        while True:
            end = exchange.drain()
            if end is not None:
                return end
            try:
                self._receive_body()
            except (ProtocolError, ClientGone, ClientTimeout):
                return LINGER

    # -- the response ------------------------------------------------------

    def write(self, data: bytes) -> None:
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"WSGI response data must be bytes, got {type(data).__name__}")
            data = bytes(data)
        if not data:
            return
        exchange = self.exchange
        if exchange.response < STARTED:
            head, first = exchange.head_with(data, self.ctx.draining)
            if exchange.overrun:
                self._log_overrun()
            self.before_send(False)
            self._send_head(head, first)
            return
        if exchange.overrun:
            return
        data = exchange.frame(data)
        if exchange.overrun:
            self._log_overrun()
        if data:
            send_all(self.sock, data, self.ctx.body_timeout, self.ctx.min_body_rate)

    def _log_overrun(self) -> None:
        exchange = self.exchange
        log.error("%s %s: app sent more than its Content-Length (%d); response cut off",
                  exchange.head.method, self.environ.get("RAW_URI"), exchange.plan.content_length)

    def _send_result(self, result) -> None:
        if type(result) is list or type(result) is tuple:
            if self._send_sequence(result):
                return
        elif isinstance(result, FileWrapper) and self._try_sendfile(result):
            pass
        else:
            exchange = self.exchange
            for data in result:
                self.write(data)
                if exchange.overrun:
                    break
        self._finish()

    def _send_sequence(self, parts) -> bool:
        """A list is complete before anything is sent: head and body go in one send().

        True if that was the whole response; False if it was only written (the head
        went already, or the list holds no bytes): the response still needs finishing.
        """
        if len(parts) == 1:
            data = parts[0]
        else:
            for part in parts:
                if type(part) is not bytes:
                    raise TypeError(f"WSGI response data must be bytes, got {type(part).__name__}")
            data = b"".join(parts)
        if type(data) is not bytes:
            raise TypeError(f"WSGI response data must be bytes, got {type(data).__name__}")
        exchange = self.exchange
        whole = exchange.whole_body(data, self.ctx.draining)
        if whole is None:
            self.write(data)
            return False
        if exchange.overrun:
            self._log_overrun()
        self.before_send(True)
        head, body = whole
        if len(body) <= _JOIN_MAX:  # nearly always: _send_head's choice, one call saved
            ctx = self.ctx
            send_all(self.sock, head + body if body else head, ctx.body_timeout, ctx.min_body_rate)
        else:
            self._send_head(head, body)
        if exchange.underrun:
            self._log_underrun()
        return True

    def _send_head(self, head: bytes, body: bytes) -> None:
        """The head and the first body bytes, in one send: joined if small, else side by side.

        Joining copies the body; a large one, held once per pool thread, was what a
        worker's RSS grew by. TLS cannot send side by side: there each goes alone.
        """
        ctx = self.ctx
        if len(body) <= _JOIN_MAX:
            send_all(self.sock, head + body if body else head, ctx.body_timeout, ctx.min_body_rate)
        elif self.tls:
            send_all(self.sock, head, ctx.body_timeout, ctx.min_body_rate)
            send_all(self.sock, body, ctx.body_timeout, ctx.min_body_rate)
        else:
            send_pair(self.sock, head, body, ctx.body_timeout, ctx.min_body_rate)

    def _try_sendfile(self, wrapper: FileWrapper) -> bool:
        if self.tls:
            return False  # the bytes must pass through the TLS layer: the file is iterated instead
        span = wrapper.sendfile_span()
        exchange = self.exchange
        if span is None or not exchange.can_send_file():
            return False
        fd, offset, length = span
        if exchange.response < STARTED:
            data = exchange.file_head(length, self.ctx.draining)
            self.before_send(False)
            send_all(self.sock, data, self.ctx.body_timeout, self.ctx.min_body_rate)
        count = exchange.file_count(length)
        if count:
            ctx = self.ctx
            exchange.file_sent(send_file(self.sock, fd, offset, count, ctx.body_timeout,
                                         ctx.min_body_rate))
        return True

    def _finish(self) -> None:
        exchange = self.exchange
        if exchange.response < STARTED:
            data = exchange.finish(self.ctx.draining)
            self.before_send(True)
            send_all(self.sock, data, self.ctx.body_timeout, self.ctx.min_body_rate)
        else:
            data = exchange.finish(self.ctx.draining)
            if data:
                send_all(self.sock, data, self.ctx.body_timeout, self.ctx.min_body_rate)
        if exchange.underrun:
            self._log_underrun()

    def _log_underrun(self) -> None:
        exchange = self.exchange
        log.error("%s %s: app sent %d of its Content-Length %d bytes; closing the connection",
                  exchange.head.method, self.environ.get("RAW_URI"), exchange.sent,
                  exchange.plan.content_length)

    # -- load shedding (the worker decides, sharedsock.shedding writes the answer) -----

    def refuse_queued(self, data: bytes) -> Turn:
        """Send ``data``, a whole response, instead of serving the next request; then close,
        lingering as after any refusal, so the client reads it and not a reset."""
        self._send_quietly(data)
        return self._end(LINGER)



def _expect_proxy_header(conn: Connection, is_unix: bool) -> None:
    """--proxy-protocol: the connection's first bytes are a PROXY header, read before anything else.

    A peer that may not send one is closed before a byte is read: we cannot tell its
    header from the truth, and it is owed no answer. For the others, a stand-in takes
    the socket's place until the header is complete, so connections pay nothing per
    read for the option, and the worker sees the same Connection throughout.
    """
    allowed = conn.ctx.proxy_allowed
    assert allowed is not None
    if not (allowed.trusts_unix if is_unix else allowed.trusts(conn.remote_addr)):
        log.info("closed connection from %s: not in --proxy-allow-ips", conn.remote_addr or "(unix)")
        conn.close()  # the socket is closed: on_readable's first recv fails and reports CLOSED
        return
    conn.sock = cast(socket.socket, ProxyHeaderSocket(conn))


class ProxyHeaderSocket:
    """The socket of a connection whose PROXY header is still arriving.

    ``on_readable`` calls ``recv`` and sees only what follows the header; once the header
    is complete the connection gets its real socket back. The first request's
    --header-timeout runs from accept, so header and request head together must arrive
    within it (``Connection.expire`` closes silently, as no request has begun).
    """

    __slots__ = ("after", "conn", "real", "reader")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        sock: Any = conn.sock
        # With TLS the header comes first, in the clear; the handshake follows it.
        self.after = sock if type(sock) is TLSHandshakeSocket else None
        self.real = sock.tls.raw if self.after is not None else sock
        self.reader = ProxyHeaderReader()

    def recv(self, size: int) -> bytes:
        """The bytes after the header; BlockingIOError until there are some; b"" (the end of
        the connection, to the caller) for a malformed header, so nothing reaches the app."""
        data = self.real.recv(size)
        if not data:
            return data
        conn = self.conn
        try:
            result = self.reader.feed(data)
        except ProxyHeaderError as error:
            log.info("closed connection from %s: %s", conn.remote_addr or "(unix)", error)
            return b""
        if result is None:
            raise BlockingIOError
        header, rest = result
        if header.source is not None:
            conn.remote_addr, port = header.source
            conn.remote_port = str(port)
            conn.trusted_peer = conn.ctx.trusted.trusts(conn.remote_addr)
        if self.after is not None:
            conn.sock = cast(socket.socket, self.after)
            self.after.first = rest
            return self.after.recv(size)
        conn.sock = self.real
        if not rest:
            raise BlockingIOError
        return rest

    def close(self) -> None:
        self.real.close()


PLAIN_HTTP_ANSWER = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 49\r\n"
                     b"Connection: close\r\n\r\nThis address speaks HTTPS: use an https:// URL.\r\n")


class TLSHandshakeSocket:
    """The socket of a TLS connection whose handshake is not complete.

    ``on_readable`` calls ``recv``, which drives the handshake as far as the bytes that
    have arrived allow, in the worker's selector loop: a pool thread that meets it
    (serving a client it just accepted) leaves it to the selector, so no app thread
    ever waits on a handshake. Once complete, the connection gets the TLS socket and
    its environ template says https; until then --header-timeout (from accept) bounds
    it, and ``Connection.expire`` closes it silently.
    """

    __slots__ = ("conn", "first", "tls")

    def __init__(self, conn: Connection, tls: TLSSocket) -> None:
        self.conn: Connection | None = conn
        self.tls = tls
        self.first = b""  # what followed a PROXY header

    def recv(self, size: int) -> bytes:
        conn, tls = self.conn, self.tls
        assert conn is not None
        if threading.get_ident() != conn.ctx.loop_thread:
            raise BlockingIOError  # the selector's thread takes it from here
        try:
            if self.first:
                first, self.first = self.first, b""
                tls.push(first)
            tls.handshake(size)
        except TLSError as error:
            return self._failed(conn, error)
        self.conn = None
        conn.sock = cast(socket.socket, tls)
        # The session tickets went out after the handshake's flight; Nagle would hold the first
        # response back until they are acknowledged (see before_send).
        conn.written = True
        base = https_base(conn.base)
        subject = client_subject(tls.peer_certificate())
        conn.base = base if subject is None else {**base, "SSL_CLIENT_S_DN": subject}
        return tls.recv(size)

    def _failed(self, conn: Connection, error: TLSError) -> bytes:
        """b"" closes the connection. A plain HTTP client is told, in plain HTTP, to use
        https://, and its request is read to the end first (a lingering close), so it
        gets the answer and not a reset."""
        log.log(logging.INFO if error.certificate else logging.DEBUG, "closed TLS connection from %s: %s",
                conn.remote_addr or "(unix)", error.reason)
        self.conn = None
        if not error.plain_http:
            return b""
        raw = self.tls.raw
        conn.sock = raw
        try:
            raw.send(PLAIN_HTTP_ANSWER)
        except OSError:
            return b""
        if conn._end(LINGER) == CLOSED:
            return b""
        raise BlockingIOError

    def close(self) -> None:
        self.conn = None
        self.tls.close()
