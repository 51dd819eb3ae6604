"""One connection's HTTP/1.1 exchanges as a state machine, without I/O.

Bytes received and the app's calls go in; what comes out is what the driver
must do: send these bytes, serve a request, receive more of a body, keep the
connection, close it, or linger before closing. All the protocol's rules live
here (where a request ends, when the client waits for a 100 Continue, how the
response body is framed, whether the response has started, what may be read
past to keep a connection), so they are tested by feeding bytes, without a
socket; the driver (``sharedsock.connection``) owns the socket, the clocks,
the app call and the logs.

One object serves every request of a connection, and its per-request state is
reset in place: the request path allocates nothing here.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum

from ..errors import ProtocolError
from . import response as rsp
from .parser import DATA, END, ERROR, HEAD, Limits, RequestHead, RequestParser

PREFETCH_LIMIT = 1 << 16  # a body up to this size is received before the app is called
DRAIN_LIMIT = 1 << 20  # unread request body we will still read past to keep a connection
LINGER_LIMIT = 1 << 20  # after a close with input possibly unread: how much of it to discard

_EMPTY = b""


class Turn(IntEnum):
    """What a connection needs next; reported to the worker's loop."""

    WAIT = 0  # more bytes from the client (or, kept alive, its next request)
    READY = 1  # a request, or a refusal, is ready to be served
    CLOSED = 2  # the connection is done


class Response(IntEnum):
    """Where the current response is: the one place that knows whether it has started."""

    NONE = 0  # the app has not called start_response
    PLANNED = 1  # status and headers known, nothing emitted: an error can still replace them
    STARTED = 2  # the head is out: no error page, no 100 Continue can be sent any more
    DONE = 3  # the last byte is out


class End(IntEnum):
    """What becomes of the connection once a request is over."""

    KEEP = 0  # serve the next request on it
    CLOSE = 1  # close now: nothing unread can be lost
    LINGER = 2  # shut our side, discard what the client still sends, then close (RFC 9112 9.6)
    DRAIN = 3  # read past the body the app left unread first (``drain``), then keep or linger


WAIT, READY, CLOSED = Turn.WAIT, Turn.READY, Turn.CLOSED
NONE, PLANNED, STARTED, DONE = Response.NONE, Response.PLANNED, Response.STARTED, Response.DONE
KEEP, CLOSE, LINGER, DRAIN = End.KEEP, End.CLOSE, End.LINGER, End.DRAIN
_LENGTH, _CHUNKED, _CLOSE, _NO_BODY = rsp.LENGTH, rsp.CHUNKED, rsp.CLOSE, rsp.NO_BODY


class Exchange:
    """The protocol state of one connection: the request being read, the response being sent.

    Request side: ``receive`` (bytes while the selector owns the connection)
    says when a request is ready; ``next_request`` hands it out; its body comes
    from ``read_body``, with ``receive_body`` for bytes received meanwhile.
    Response side: ``start_response``, then ``head_with`` / ``frame`` /
    ``whole_body`` / ``file_head`` + ``file_count`` / ``finish`` return the bytes
    to send (``head_with`` and ``whole_body`` the head and the body apart: joining
    them is the driver's choice, as it copies the body), and ``end`` what becomes
    of the connection.

    ``sent`` counts the response body bytes emitted (as framed on the wire),
    ``sent_before`` those emitted before the latest output: if sending that
    output fails, the client got ``sent_before`` plus what the failed send got out.
    """

    __slots__ = ("parser", "events", "keepalive", "server", "served", "prefetching", "prefetched",
                 "lingering", "linger_left", "head", "body_done", "body", "expecting", "consumed",
                 "body_error", "drain_left", "response", "plan", "mode", "keep_alive", "sent",
                 "sent_before", "status", "overrun", "underrun", "write")
    # Per request, set by next_request:
    head: RequestHead
    body_done: bool
    body: bytes | None  # the whole body, when it was here before the request was handed out (take_body)
    expecting: bool  # the client waits for a 100 Continue before sending the body
    consumed: int  # body bytes handed out so far
    body_error: ProtocolError | None
    drain_left: int
    plan: rsp.ResponsePlan | None
    mode: int
    keep_alive: bool
    sent: int
    sent_before: int
    status: str
    overrun: bool  # the app sent more than its Content-Length: the rest is dropped
    underrun: bool  # ... or less: the connection cannot be reused
    linger_left: int  # set by linger

    def __init__(self, limits: Limits, keepalive: bool, server: str) -> None:
        """``keepalive``: whether connections may be kept at all; ``server``: the Server header.

        Only what is read before the first request is set here: ``next_request``
        sets the per-request state (a connection that serves one request, the
        common case with ``Connection: close``, pays for it once).
        """
        self.parser = RequestParser(limits)
        self.events: deque = deque()
        self.keepalive = keepalive
        self.server = server
        self.served = False  # a request has been handed out: the connection is a kept-alive one
        self.prefetching = False  # a head is queued and its small body is still arriving
        self.prefetched = 0
        self.lingering = False
        self.response = NONE
        self.write: object = None  # what start_response returns: the driver's write callable

    # -- the connection ----------------------------------------------------

    @property
    def in_head(self) -> bool:
        return self.parser.in_head

    @property
    def idle(self) -> bool:
        """Nothing of a request is waiting: the connection may be dropped without losing one."""
        return self.lingering or (not self.parser.in_head and not self.events)

    @property
    def between_requests(self) -> bool:
        """Kept alive after a response, with nothing of a next request seen yet."""
        return self.served and not self.lingering and not self.parser.in_head and not self.events

    def linger(self) -> None:
        """The driver shut our side down: from now on input is only counted and dropped."""
        self.events.clear()
        self.lingering = True
        self.linger_left = LINGER_LIMIT

    def discard(self, size: int) -> Turn:
        """``size`` bytes arrived while lingering: CLOSED once enough has been dropped."""
        self.linger_left -= size
        return CLOSED if self.linger_left <= 0 else WAIT

    # -- the request -------------------------------------------------------

    def receive(self, data: bytes) -> Turn:
        """Bytes that arrived while no request is being served: READY once one can be.

        A request is ready at its head unless it has a small body (at most
        PREFETCH_LIMIT, and no 100-continue to wait for): that body is taken
        first, so a slow client costs no app thread.
        """
        events = self.parser.feed(data)
        if events:
            self.events.extend(events)
            for kind, payload in events:
                if kind == HEAD:
                    if not payload.has_body or payload.expect_continue or (
                            not payload.chunked and payload.content_length > PREFETCH_LIMIT):
                        return READY
                    self.prefetching = True
                    self.prefetched = 0
                elif kind == DATA:
                    self.prefetched += len(payload)
                    if self.prefetched >= PREFETCH_LIMIT:
                        return READY
                else:  # END or ERROR
                    return READY
        return WAIT

    def next_request(self) -> RequestHead | ProtocolError | None:
        """The next queued request to serve, a ProtocolError to refuse, or None: nothing queued."""
        self.prefetching = False
        events = self.events
        while events:
            kind, payload = events.popleft()
            if kind == HEAD:
                self.served = True
                self.head = payload
                self.response = NONE
                self.plan = None
                self.mode = _LENGTH
                self.keep_alive = False
                self.sent = self.sent_before = 0
                self.status = "000"
                self.overrun = self.underrun = False
                self.consumed = 0
                self.body_error = None
                self.body = None
                if payload.has_body:
                    self.body_done = False
                    self.expecting = payload.expect_continue
                    if not self.expecting:
                        self._take_whole_body()
                else:
                    self.body_done = True
                    self.expecting = False
                    if events and events[0][0] == END:
                        events.popleft()
                return payload
            if kind == ERROR:
                return payload
        return None

    def _take_whole_body(self) -> None:
        """A body that arrived in full with its head becomes one ``bytes`` (``take_body``) at once.

        The app then reads it through a C-level stream instead of piece by piece
        through ``read_body``; joining now costs the one copy that reading would.
        """
        events = self.events
        pieces = []
        for kind, payload in events:
            if kind != DATA:
                if kind != END:
                    return
                break
            pieces.append(payload)
        else:
            return
        if len(events) == len(pieces) + 1:
            events.clear()  # nothing pipelined behind it: the common case
        else:
            for _ in range(len(pieces) + 1):
                events.popleft()
        body = pieces[0] if len(pieces) == 1 and type(pieces[0]) is bytes else _EMPTY.join(pieces)
        self.body = body
        self.body_done = True
        self.consumed = len(body)

    def take_body(self) -> bytes | None:
        """The whole body, if it came with the head (handed out once); None: use ``read_body``."""
        body = self.body
        self.body = None
        return body

    def take_continue(self) -> bytes:
        """The app wants the body: the 100 Continue to send, once (b"" if the response began)."""
        self.expecting = False
        return rsp.CONTINUE if self.response < STARTED else _EMPTY

    def read_body(self) -> bytes | memoryview | None:
        """The next piece of the body (b"" at its end), or None: receive more first.

        Raises the ProtocolError that makes the body unusable, again on every later call.
        """
        if self.body_done:
            return self.take_body() or _EMPTY
        if self.body_error is not None:
            raise self.body_error
        events = self.events
        if not events:
            return None
        kind, payload = events[0]
        if kind == DATA:
            events.popleft()
            self.consumed += len(payload)
            return payload
        if kind == END:
            events.popleft()
            self.body_done = True
            return _EMPTY
        if kind == ERROR:
            events.popleft()
            error = payload
        else:  # a HEAD: cannot happen
            error = ProtocolError(400, "request ended early")
        self.body_error = error
        raise error

    def receive_body(self, data: bytes) -> None:
        """Bytes received while the app (or ``drain``) waits for the body."""
        self.events.extend(self.parser.feed(data))

    def body_failed(self, error: ProtocolError) -> None:
        """The driver gave up on the body (too slow, timed out): every later read raises ``error``."""
        self.body_error = error

    def _can_drain(self) -> bool:
        """Whether the unread rest of the body is known to be small enough to read past."""
        if self.body_done:
            return True
        if self.body_error is not None or self.expecting:
            return False
        for kind, _ in self.events:
            if kind != DATA:
                return kind == END
        head = self.head
        if head.chunked:
            return False
        return head.content_length - self.consumed <= DRAIN_LIMIT

    def drain(self) -> End | None:
        """Read past what the app left unread: KEEP at its end, LINGER if it cannot be; None: receive."""
        if self.expecting:
            return LINGER  # the client is still waiting for permission to send it
        left = self.drain_left
        try:
            while not self.body_done:
                piece = self.read_body()
                if piece is None:
                    self.drain_left = left
                    return None
                left -= len(piece)
                if left < 0:
                    return LINGER
        except ProtocolError:
            return LINGER
        return KEEP

    # -- the response ------------------------------------------------------

    def start_response(self, status: object, headers: object, exc_info=None):
        """PEP 3333's rules: a second call only with ``exc_info``, and only before the head went.

        Returns ``write``, which the driver sets while the app runs (and clears after,
        so that the driver and the exchange do not hold each other).
        """
        if exc_info is not None:
            try:
                if self.response >= STARTED:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.plan is not None:
            raise RuntimeError("start_response() called a second time without exc_info")
        self.plan = rsp.check_start_response(status, headers)
        self.status = status  # type: ignore[assignment]  # checked: a str
        self.response = PLANNED
        return self.write

    def _decide(self, draining: bool) -> None:
        """Fix the body framing and whether the connection survives, just before the head goes."""
        plan = self.plan
        if plan is None:
            raise RuntimeError("the application did not call start_response()")
        if self.body_error is not None:
            raise self.body_error  # the app swallowed a bad body: the client gets our error instead
        head = self.head
        mode = self.mode = rsp.body_mode(plan, head.method, head.version)
        self.keep_alive = (
            head.keep_alive and self.keepalive and not draining and not plan.app_wants_close
            and mode != _CLOSE and (self.body_done or self._can_drain())
        )

    def _head(self, first: bytes) -> bytes:
        """The head, to be sent with the already framed ``first`` body bytes after it."""
        head = self.head
        data = rsp.render_head(self.plan, self.mode, self.keep_alive, self.server, head.version == "1.0")
        self.response = STARTED
        self.sent_before = self.sent
        self.sent += len(first)
        return data

    def head_with(self, data: bytes, draining: bool) -> tuple[bytes, bytes]:
        """The head and, framed, the first body bytes the app wrote (not empty), to send in order."""
        self._decide(draining)
        first = self._frame(data) if self.mode != _NO_BODY else _EMPTY
        return self._head(first), first

    def frame(self, data: bytes) -> bytes:
        """More body bytes, after the head, as they go on the wire (b"": nothing to send)."""
        if self.mode == _NO_BODY or self.overrun:
            return _EMPTY
        data = self._frame(data)
        self.sent_before = self.sent
        self.sent += len(data)
        return data

    def _frame(self, data: bytes) -> bytes:
        mode = self.mode
        if mode == _CHUNKED:
            return rsp.chunk(data)
        if mode == _LENGTH:
            room = self.plan.content_length - self.sent
            if len(data) > room:
                self.overrun = True
                self.keep_alive = False
                return data[:max(room, 0)]
        return data

    def whole_body(self, data: bytes, draining: bool) -> tuple[bytes, bytes] | None:
        """A body known in full before anything is sent: the head, with a Content-Length, and the body.

        None when the head went already or ``data`` is empty: then it is an ordinary
        write. Otherwise nothing is left to send (no ``finish``): the response is DONE.
        """
        plan = self.plan
        if plan is None:
            raise RuntimeError("the application did not call start_response()")
        if self.response >= STARTED or not data:
            return None
        if plan.content_length is None and plan.may_have_body:
            plan.headers.append(("Content-Length", str(len(data))))
            plan.content_length = len(data)
        self._decide(draining)
        mode = self.mode
        if mode == _LENGTH and len(data) <= plan.content_length:
            first = data  # nearly always: what _frame would return, one call saved
        else:
            first = self._frame(data) if mode != _NO_BODY else _EMPTY
        out = rsp.render_head(plan, mode, self.keep_alive, self.server, self.head.version == "1.0")
        self.sent = len(first)
        self.response = DONE
        if mode == _LENGTH and self.sent < plan.content_length:
            self.underrun = True
            self.keep_alive = False
        elif self.overrun:
            self.keep_alive = False
        return out, first

    def can_send_file(self) -> bool:
        return self.plan is not None and not (self.response >= STARTED and self.mode == _CHUNKED)

    def file_head(self, length: int, draining: bool) -> bytes:
        """The head for a body sent from a file of ``length`` bytes (given a Content-Length)."""
        plan = self.plan
        if plan.content_length is None and plan.may_have_body:
            plan.headers.append(("Content-Length", str(length)))
            plan.content_length = length
        self._decide(draining)
        return self._head(_EMPTY)

    def file_count(self, length: int) -> int:
        """How much of a file of ``length`` bytes to send; report what went with ``file_sent``.

        A file longer than the declared length is how ranges are served: send the
        declared part only (PEP 3333 says to stop there), without calling it an error.
        """
        mode = self.mode
        if mode == _NO_BODY or self.overrun:
            return 0
        self.sent_before = self.sent
        if mode == _LENGTH:
            return min(length, self.plan.content_length - self.sent)
        return length

    def file_sent(self, count: int) -> None:
        self.sent += count

    def finish(self, draining: bool) -> bytes:
        """The app is done: what is left to send (the whole response if nothing went yet)."""
        if self.response < STARTED:
            plan = self.plan
            if plan is not None and plan.content_length is None and plan.may_have_body \
                    and self.head.method != "HEAD":
                plan.headers.append(("Content-Length", "0"))
                plan.content_length = 0
            self._decide(draining)
            data = self._head(_EMPTY)
        elif self.mode == _CHUNKED:
            data = rsp.LAST_CHUNK
        else:
            data = _EMPTY
        if self.mode == _LENGTH and self.sent < self.plan.content_length:
            self.underrun = True
            self.keep_alive = False
        if self.overrun:
            self.keep_alive = False
        self.response = DONE
        return data

    # -- the end -----------------------------------------------------------

    def end(self) -> End:
        """After a complete response: what becomes of the connection."""
        if not self.body_done:
            if self.keep_alive:
                self.drain_left = DRAIN_LIMIT
                return DRAIN
            return LINGER
        if not self.keep_alive:
            # Input after this request (pipelined, or a head begun) would be reset by a close.
            return LINGER if self.events or self.parser.in_head else CLOSE
        return KEEP

    def end_after_error(self) -> End:
        """After the app failed: a close lingers if the client may still be sending the body.

        Or if it sent one: a body received whole with its head may not have been read.
        """
        return LINGER if not self.body_done or self.head.has_body else CLOSE

    def refusal(self, error: ProtocolError) -> bytes:
        """A complete error response for a request we will not serve; the connection closes after it."""
        return rsp.error_response(error, self.server)

    def error_answer(self, error: ProtocolError) -> bytes:
        """The app (or its body) raised ``error``: our error page, unless the response has started."""
        if self.response >= STARTED:
            return _EMPTY
        self.status = f"{error.status} {rsp.REASONS.get(error.status, 'Error')}"
        return rsp.error_response(error, self.server)

    def crash_answer(self) -> bytes:
        """The app raised: a 500, unless the response has started."""
        if self.response >= STARTED:
            return _EMPTY
        self.status = "500 Internal Server Error"
        return rsp.simple_response(500, b"Internal Server Error\n", self.server)

    def timeout_answer(self) -> bytes:
        """The worker is stuck and about to die: a 504, unless the response has started."""
        if self.response >= STARTED:
            return _EMPTY
        return rsp.simple_response(504, b"Gateway Timeout: the request took too long\n", self.server)
