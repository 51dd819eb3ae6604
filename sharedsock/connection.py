"""One client connection: read, parse, call the app, write, then keep-alive or close.

The worker's selector owns a connection while it is idle, still sending its
request head, or sending a small body; ``serve`` runs (inline or on a pool
thread) once a request is ready and returns whether the connection goes back
to the selector. So a slow or idle client costs a selector slot, not an app
thread, unless its body is too large to hold and must be streamed to the app.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from typing import Any, Callable

from .errors import ProtocolError
from .http import response as rsp
from .http.parser import DATA, END, ERROR, HEAD, Limits, RequestHead, RequestParser
from .logs import AccessLog, AccessRecord, log
from .proxy import TrustedProxies, apply_proxy_headers
from .sockio import READ_SIZE, ClientGone, ClientTimeout, recv_some, send_all, send_file
from .wsgi import EMPTY_INPUT, FileWrapper, InputStream, build_environ

# What serve() and on_readable() report to the worker loop.
WAIT = 0
READY = 1
CLOSED = 2

PREFETCH_LIMIT = 1 << 16  # a body up to this size is received before the app is called
DRAIN_LIMIT = 1 << 20  # unread request body we will still read past to keep a connection
LINGER_TIME = 2.0  # after a close with input possibly unread: how long to keep discarding it
LINGER_LIMIT = 1 << 20  # ... and how much of it
_EMPTY = b""


class ServerContext:
    """Everything connections of one worker share."""

    def __init__(self, app: Callable, *, limits: Limits, keepalive: float, header_timeout: float,
                 body_timeout: float, min_body_rate: int, root_path: str, server_header: str,
                 trusted: TrustedProxies, access_log: AccessLog | None, multithread: bool,
                 multiprocess: bool) -> None:
        self.app = app
        self.limits = limits
        self.keepalive = keepalive
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.min_body_rate = min_body_rate
        self.root_path = root_path.rstrip("/")
        self.server_header = server_header
        self.trusted = trusted
        self.access_log = access_log
        self.multithread = multithread
        self.multiprocess = multiprocess
        self.draining = False
        self.requests_served = 0
        self.inflight: dict[Connection, float] = {}
        self.pre_request: Callable[[dict], None] | None = None  # config-file hooks, set at worker start
        self.post_request: Callable[[dict, str], None] | None = None

    def oldest_request_start(self) -> float:
        starts = list(self.inflight.values())
        return min(starts) if starts else 0.0


class Connection:
    __slots__ = ("sock", "fd", "ctx", "parser", "events", "base", "remote_addr", "remote_port",
                 "deadline", "trusted_peer", "response_started", "closed", "environ", "prefetching",
                 "prefetched", "prefetch_cap", "lingering", "linger_left", "nodelay", "answered",
                 "idle_since")

    def __init__(self, sock: socket.socket, peer: Any, base: dict, ctx: ServerContext,
                 is_unix: bool) -> None:
        """``base``: the listener's environ template (``wsgi.base_environ``); shared, never written."""
        sock.setblocking(False)
        self.sock = sock
        self.nodelay = is_unix  # TCP_NODELAY is set when first needed: see before_send
        self.answered = False
        self.fd = sock.fileno()  # still known after close, so the worker can find its entry
        self.ctx = ctx
        self.parser = RequestParser(ctx.limits)
        self.events: deque = deque()
        self.base = base
        if is_unix:
            self.remote_addr = self.remote_port = ""
            self.trusted_peer = ctx.trusted.trusts_unix
        else:
            self.remote_addr, self.remote_port = peer[0], str(peer[1])
            self.trusted_peer = ctx.trusted.trusts(self.remote_addr)
        self.deadline = time.monotonic() + ctx.header_timeout
        self.response_started = False
        self.closed = False
        self.environ: dict | None = None
        self.prefetching = False  # a head is queued and its small body is still arriving
        self.prefetched = 0
        self.prefetch_cap = 0.0
        self.lingering = False
        self.linger_left = 0
        self.idle_since = 0.0  # when the last response ended; 0 before the first

    # -- selector side -----------------------------------------------------

    def on_readable(self) -> int:
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
        if self.lingering:
            self.linger_left -= len(data)
            if self.linger_left <= 0:
                self.close()
                return CLOSED
            return WAIT
        return self.feed(data)

    def feed(self, data: bytes) -> int:
        """Parse bytes that arrived while the selector owned the connection."""
        had_partial = self.parser.in_head
        events = self.parser.feed(data)
        if events:
            self.events.extend(events)
            for kind, payload in events:
                if kind == HEAD:
                    if not payload.has_body or payload.expect_continue or (
                            not payload.chunked and payload.content_length > PREFETCH_LIMIT):
                        return READY
                    self._start_prefetch()
                elif kind == DATA:
                    self.prefetched += len(payload)
                    if self.prefetched >= PREFETCH_LIMIT:
                        return READY
                else:  # END or ERROR
                    return READY
        ctx = self.ctx
        if self.prefetching:
            # Each piece of the body must follow the last within --body-timeout, and once
            # the first --body-timeout is over, the body so far must keep --min-body-rate
            # (as RequestBody._receive has it): a trickle cannot hold the slot.
            now = time.monotonic()
            deadline = now + ctx.body_timeout
            if ctx.min_body_rate:
                started = self.prefetch_cap - ctx.body_timeout
                deadline = min(deadline, max(self.prefetch_cap,
                                             started + self.prefetched / ctx.min_body_rate))
            self.deadline = deadline
        elif not had_partial and self.parser.in_head and self.environ is not None:
            # The first byte of a kept-alive request: its head must follow within
            # --header-timeout (of this byte, or of the end of the --keepalive wait if the
            # byte came late). A first request's clock runs from accept and is left alone,
            # and bytes that begin no request (blank lines) move no clock.
            self.deadline = min(time.monotonic(), self.deadline) + ctx.header_timeout
        return WAIT

    def _start_prefetch(self) -> None:
        """The body clock starts with the head; ``prefetch_cap`` is when its grace ends."""
        self.prefetching = True
        self.prefetched = 0
        self.prefetch_cap = time.monotonic() + self.ctx.body_timeout

    def expire(self) -> None:
        """The selector-side deadline passed: idle, lingering, or a request that never finished."""
        if not self.lingering:
            if self.prefetching:
                ctx = self.ctx
                elapsed = time.monotonic() - (self.prefetch_cap - ctx.body_timeout)
                slow = elapsed > ctx.body_timeout and self.prefetched < ctx.min_body_rate * elapsed
                reason = "request body too slow" if slow else "request body timeout"
                self._refuse(ProtocolError(408, reason), log_access=True)
            elif self.parser.in_head:
                self._refuse(ProtocolError(408, "request head timeout"), log_access=True)
        self.close()

    @property
    def is_idle(self) -> bool:
        return self.lingering or (not self.parser.in_head and not self.events)

    @property
    def between_requests(self) -> bool:
        """Kept alive after a response, with nothing of a next request seen yet."""
        return (self.environ is not None and not self.lingering and not self.parser.in_head
                and not self.events)

    def close_if_quiet(self) -> int:
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

    def serve(self) -> int:
        """Answer every complete request queued on this connection."""
        self.prefetching = False
        events = self.events
        try:
            while events:
                kind, payload = events.popleft()
                if kind == HEAD:
                    keep, linger = self._exchange(payload)
                    if not keep:
                        return self._end(linger)
                elif kind == ERROR:
                    self._refuse(payload, log_access=True)
                    return self._end(True)
        except Exception:  # a bug of ours must cost one connection, never the worker
            log.exception("internal error while serving a connection")
            self.close()
            return CLOSED
        # Even when draining, a connection kept alive stays open: its client may be sending
        # the next request now. The worker closes it once it is quiet (close_if_quiet).
        now = self.idle_since = time.monotonic()
        self.deadline = now + (self.ctx.header_timeout if self.parser.in_head else self.ctx.keepalive)
        return WAIT

    def _end(self, linger: bool) -> int:
        """Close after a response; with ``linger``, first let unread input arrive and drop it.

        Closing a socket with unread input makes the kernel send a reset, which can
        destroy the response the client has not read yet (RFC 9112 9.6). Shutting
        down our side and discarding input for a moment lets the response arrive.
        """
        if self.closed:
            return CLOSED
        if not linger:
            self.close()
            return CLOSED
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.close()
            return CLOSED
        self.events.clear()
        self.lingering = True
        self.linger_left = LINGER_LIMIT
        self.deadline = time.monotonic() + LINGER_TIME
        return WAIT

    def _refuse(self, error: ProtocolError, log_access: bool = False) -> None:
        """Answer a request we will not serve; ``log_access`` for one the app never saw."""
        log.debug("refused request: %s %s", error.status, error.reason)
        data = rsp.error_response(error, self.ctx.server_header)
        self._send_quietly(data)
        access = self.ctx.access_log
        if log_access and access is not None:
            environ = {"REMOTE_ADDR": self.remote_addr, **self.parser.request_line_environ()}
            access.write(AccessRecord(environ, f"{error.status} {rsp.REASONS.get(error.status, '')}",
                                      [], len(data) - data.index(b"\r\n\r\n") - 4, 0.0))

    def _exchange(self, head: RequestHead) -> tuple[bool, bool]:
        """One request and its response: (may the connection be reused, should a close linger)."""
        ctx = self.ctx
        started = time.monotonic()
        ctx.inflight[self] = started
        self.response_started = False
        environ = build_environ(head, self.base, self.remote_addr, self.remote_port, ctx.root_path)
        if self.trusted_peer:
            apply_proxy_headers(environ, ctx.trusted)
        body: RequestBody | None = None
        if head.has_body:
            body = RequestBody(self, head)
            environ["wsgi.input"] = InputStream(body.next_chunk)
        else:
            if self.events and self.events[0][0] == END:
                self.events.popleft()
            environ["wsgi.input"] = EMPTY_INPUT
        self.environ = environ
        writer = ResponseWriter(self, head, body)
        result = None
        try:
            try:
                if ctx.pre_request is not None:
                    ctx.pre_request(environ)
                result = ctx.app(environ, writer.start_response)
                writer.send_result(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
        except ProtocolError as error:
            if not writer.head_sent:
                self._refuse(error)
                writer.status = f"{error.status} {rsp.REASONS.get(error.status, 'Error')}"
            self._log_access(writer, started)
            return False, True
        except (ClientGone, ClientTimeout) as error:
            if isinstance(error, ClientTimeout):  # our decision, so the operator hears of it
                log.info("cut off client %s during %s %s: it %s; %d bytes of the response sent",
                         self.remote_addr or "(unix)", head.method, environ.get("RAW_URI"),
                         error.reason, writer.sent + error.sent)
            else:
                log.debug("client went away during %s %s", head.method, environ.get("RAW_URI"))
            return False, False
        except Exception:
            log.exception("error handling %s %s", head.method, environ.get("RAW_URI"))
            if not writer.head_sent:
                self._send_quietly(rsp.simple_response(500, b"Internal Server Error\n",
                                                       ctx.server_header))
                writer.status = "500 Internal Server Error"
            self._log_access(writer, started)
            return False, body is not None and not body.done
        finally:
            ctx.inflight.pop(self, None)
            ctx.requests_served += 1
            if ctx.post_request is not None:
                ctx.post_request(environ, writer.status)
        if ctx.access_log is not None:
            self._log_access(writer, started)
        if body is not None and not body.done:
            if writer.keep_alive and body.drain():
                return True, False
            return False, True
        if not writer.keep_alive:
            return False, bool(self.events) or self.parser.in_head
        return True, False

    def _log_access(self, writer: "ResponseWriter", started: float) -> None:
        access = self.ctx.access_log
        if access is not None and self.environ is not None:
            headers = writer.plan.headers if writer.plan is not None else []
            access.write(AccessRecord(self.environ, writer.status, headers, writer.sent,
                                      time.monotonic() - started))

    def answer_timeout(self) -> None:
        """Called from the SIGABRT handler: tell a stuck client 504 if we still can."""
        if self.response_started or self.closed:
            return
        self._send_quietly(rsp.simple_response(504, b"Gateway Timeout: the request took too long\n",
                                               self.ctx.server_header))
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
        if not self.nodelay and (self.answered or not whole):
            self.nodelay = True
            try:
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.answered = True

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


class RequestBody:
    """Pulls one request's body off the connection as the app reads it."""

    __slots__ = ("conn", "head", "done", "continue_sent", "consumed", "received", "waited",
                 "error")

    def __init__(self, conn: Connection, head: RequestHead) -> None:
        self.conn = conn
        self.head = head
        self.done = False
        self.continue_sent = not head.expect_continue
        self.consumed = 0  # body bytes handed out so far
        self.received = 0  # bytes received while waiting for this body
        self.waited = 0.0  # seconds spent waiting for them: the app's own time is not the client's
        self.error: ProtocolError | None = None

    def next_chunk(self) -> bytes:
        if self.done:
            return _EMPTY
        if self.error is not None:
            raise self.error
        conn = self.conn
        if not self.continue_sent:
            self.continue_sent = True
            if not conn.response_started:  # once the response began, a 100 would corrupt it
                conn.before_send(False)
                send_all(conn.sock, rsp.CONTINUE, conn.ctx.body_timeout)
        events = conn.events
        try:
            while True:
                while events:
                    kind, payload = events[0]
                    if kind == DATA:
                        events.popleft()
                        self.consumed += len(payload)
                        return payload
                    if kind == END:
                        events.popleft()
                        self.done = True
                        return _EMPTY
                    if kind == ERROR:
                        events.popleft()
                        raise payload
                    raise ProtocolError(400, "request ended early")  # a HEAD: cannot happen
                self._receive()
        except ProtocolError as error:
            self.error = error
            raise

    def _receive(self) -> None:
        ctx = self.conn.ctx
        start = time.monotonic()
        try:
            data = recv_some(self.conn.sock, ctx.body_timeout)
        except ClientTimeout:
            raise ProtocolError(408, "request body timeout") from None
        if not data:
            raise ClientGone()
        self.waited += time.monotonic() - start
        self.received += len(data)
        if ctx.min_body_rate and self.waited > ctx.body_timeout \
                and self.received < ctx.min_body_rate * self.waited:
            raise ProtocolError(408, "request body too slow")
        self.conn.events.extend(self.conn.parser.feed(data))

    def can_drain(self) -> bool:
        """Whether the unread rest is known to be small enough to read past."""
        if self.done:
            return True
        if self.error is not None or not self.continue_sent:
            return False
        for kind, _ in self.conn.events:
            if kind != DATA:
                return kind == END
        if self.head.chunked:
            return False
        return self.head.content_length - self.consumed <= DRAIN_LIMIT

    def drain(self) -> bool:
        """Read and drop what the app left unread, so the next request can follow."""
        if not self.continue_sent:
            return False  # the client is still waiting for permission to send it
        left = DRAIN_LIMIT
        try:
            while not self.done:
                left -= len(self.next_chunk())
                if left < 0:
                    return False
        except (ProtocolError, ClientGone, ClientTimeout):
            return False
        return True


class ResponseWriter:
    """Carries one response from ``start_response`` to the last byte."""

    __slots__ = ("conn", "head", "body", "plan", "mode", "head_sent", "keep_alive", "sent",
                 "status", "_failed")

    def __init__(self, conn: Connection, head: RequestHead, body: RequestBody | None) -> None:
        self.conn = conn
        self.head = head
        self.body = body
        self.plan: rsp.ResponsePlan | None = None
        self.mode = rsp.LENGTH
        self.head_sent = False
        self.keep_alive = False
        self.sent = 0
        self.status = "000"
        self._failed = False

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.plan is not None:
            raise RuntimeError("start_response() called a second time without exc_info")
        self.plan = rsp.check_start_response(status, headers)
        self.status = status
        return self.write

    def _decide(self) -> None:
        """Fix the body framing and whether the connection survives, just before the head goes."""
        plan = self.plan
        if plan is None:
            raise RuntimeError("the application did not call start_response()")
        head, conn = self.head, self.conn
        body = self.body
        if body is not None and body.error is not None:
            raise body.error  # the app swallowed a bad body: the client gets our error instead
        self.mode = rsp.body_mode(plan, head.method, head.version)
        self.keep_alive = (
            head.keep_alive and conn.ctx.keepalive > 0 and not conn.ctx.draining
            and not plan.app_wants_close and self.mode != rsp.CLOSE
            and (body is None or body.can_drain())
        )

    def _send_head(self, first: bytes = _EMPTY, whole: bool = False) -> None:
        """The head, and with ``whole`` the complete body in ``first``: nothing follows."""
        data = rsp.render_head(self.plan, self.mode, self.keep_alive, self.conn.ctx.server_header,
                               self.head.version == "1.0")
        if first:
            data += first
        self.head_sent = True
        conn = self.conn
        conn.response_started = True
        conn.before_send(whole)
        send_all(conn.sock, data, conn.ctx.body_timeout, conn.ctx.min_body_rate)
        self.sent += len(first)

    def write(self, data: bytes) -> None:
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"WSGI response data must be bytes, got {type(data).__name__}")
            data = bytes(data)
        if not data:
            return
        if not self.head_sent:
            self._decide()
            self._send_head(self._frame(data) if self.mode != rsp.NO_BODY else _EMPTY)
            return
        if self.mode == rsp.NO_BODY or self._failed:
            return
        data = self._frame(data)
        if data:
            send_all(self.conn.sock, data, self.conn.ctx.body_timeout, self.conn.ctx.min_body_rate)
            self.sent += len(data)

    def _frame(self, data: bytes) -> bytes:
        if self.mode == rsp.CHUNKED:
            return rsp.chunk(data)
        if self.mode == rsp.LENGTH:
            room = self.plan.content_length - self.sent
            if len(data) > room:
                self._overrun()
                return data[:max(room, 0)]
        return data

    def _overrun(self) -> None:
        log.error("%s %s: app sent more than its Content-Length (%d); response cut off",
                  self.head.method, self.conn.environ.get("RAW_URI"), self.plan.content_length)
        self.keep_alive = False
        self._failed = True

    def send_result(self, result) -> None:
        if type(result) is list or type(result) is tuple:
            self._send_sequence(result)
        elif isinstance(result, FileWrapper) and self._try_sendfile(result):
            pass
        else:
            for data in result:
                self.write(data)
                if self._failed:
                    break
        self.finish()

    def _send_sequence(self, parts) -> None:
        """A list is complete before anything is sent: give it a Content-Length."""
        if len(parts) == 1:
            data = parts[0]
        else:
            for part in parts:
                if type(part) is not bytes:
                    raise TypeError(f"WSGI response data must be bytes, got {type(part).__name__}")
            data = b"".join(parts)
        if type(data) is not bytes:
            raise TypeError(f"WSGI response data must be bytes, got {type(data).__name__}")
        plan = self.plan
        if plan is None:
            raise RuntimeError("the application did not call start_response()")
        if self.head_sent or not data:
            self.write(data)
            return
        if plan.content_length is None and plan.may_have_body:
            plan.headers.append(("Content-Length", str(len(data))))
            plan.content_length = len(data)
        self._decide()  # the whole response in one send: head and body together
        self._send_head(self._frame(data) if self.mode != rsp.NO_BODY else _EMPTY, whole=True)

    def _try_sendfile(self, wrapper: FileWrapper) -> bool:
        span = wrapper.sendfile_span()
        if span is None or self.plan is None:
            return False
        if self.head_sent and self.mode == rsp.CHUNKED:
            return False
        fd, offset, length = span
        plan = self.plan
        if not self.head_sent:
            if plan.content_length is None and plan.may_have_body:
                plan.headers.append(("Content-Length", str(length)))
                plan.content_length = length
            self._decide()
            self._send_head()
        if self.mode == rsp.NO_BODY or self._failed:
            return True
        # A file longer than the declared length is how ranges are served: send the
        # declared part only (PEP 3333 says to stop there), without calling it an error.
        count = min(length, plan.content_length - self.sent) if self.mode == rsp.LENGTH else length
        self.sent += send_file(self.conn.sock, fd, offset, count, self.conn.ctx.body_timeout,
                               self.conn.ctx.min_body_rate)
        return True

    def finish(self) -> None:
        if not self.head_sent:
            plan = self.plan
            if plan is not None and plan.content_length is None and plan.may_have_body \
                    and self.head.method != "HEAD":
                plan.headers.append(("Content-Length", "0"))
                plan.content_length = 0
            self._decide()
            self._send_head(whole=True)
        elif self.mode == rsp.CHUNKED:
            send_all(self.conn.sock, rsp.LAST_CHUNK, self.conn.ctx.body_timeout, self.conn.ctx.min_body_rate)
        if self.mode == rsp.LENGTH and self.sent < self.plan.content_length:
            log.error("%s %s: app sent %d of its Content-Length %d bytes; closing the connection",
                      self.head.method, self.conn.environ.get("RAW_URI"), self.sent,
                      self.plan.content_length)
            self.keep_alive = False
        if self._failed:
            self.keep_alive = False
