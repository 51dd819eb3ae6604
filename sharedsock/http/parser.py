"""Sans-I/O HTTP/1.1 request parser: bytes in, events out.

llhttp (through httptools) does the byte-level work and is strict about
syntax. What it leaves to us is framing policy and limits: header counts and
sizes, HTTP versions, Transfer-Encoding codings, trailers, and the rule that
nothing after an invalid request is ever served. Keeping that here, away from
sockets, lets the tests feed a request whole, byte by byte or in random pieces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httptools

from ..errors import ProtocolError

# Event kinds, in the order one request produces them.
HEAD = 0  # payload: RequestHead
DATA = 1  # payload: bytes of the body
END = 2  # payload: None; the request (body included) is complete
ERROR = 3  # payload: ProtocolError; always the last event the parser ever produces


@dataclass(frozen=True)
class Limits:
    request_line: int = 8190
    request_fields: int = 100
    request_field_size: int = 8190
    request_body: int = 1 << 30  # 0 means unlimited

    @property
    def head_bytes(self) -> int:
        """An upper bound on a whole request head that respects every other limit."""
        return self.request_line + 2 + self.request_fields * (self.request_field_size + 2) + 2


class RequestHead:
    """The request line and headers, exactly as received (header names keep their case)."""

    __slots__ = ("method", "target", "version", "headers", "keep_alive", "content_length",
                 "chunked", "expect_continue", "upgrade")

    def __init__(self, method: str, target: bytes, version: str, headers: list[tuple[bytes, bytes]],
                 keep_alive: bool, content_length: int | None, chunked: bool, expect_continue: bool,
                 upgrade: bool) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = expect_continue
        self.upgrade = upgrade

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def __repr__(self) -> str:
        return f"<RequestHead {self.method} {self.target!r} HTTP/{self.version}>"


_SUPPORTED_VERSIONS = ("1.1", "1.0")
_FRAMING_NAME_LENGTHS = frozenset(len(n) for n in (b"host", b"expect", b"content-length",
                                                    b"transfer-encoding"))
_METHOD_NAMES = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
_ABSOLUTE_FORM = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://[^/?#]")
# The partial head of the chunk in which a request began is counted whole, so
# allow one receive buffer of slack on top of the exact bound.
_SLACK = 65536


class RequestParser:
    """Turns the bytes of one connection into HEAD / DATA / END events.

    ``feed`` returns the events the new bytes completed. When the stream stops
    being valid HTTP the last event is ``(ERROR, ProtocolError)`` and every
    later feed returns nothing, so a pipelined request behind a bad one can
    never be served, while the good requests before it still are.
    """

    def __init__(self, limits: Limits = Limits()) -> None:
        self._limits = limits
        self._max_head = limits.head_bytes + _SLACK
        self._parser = httptools.HttpRequestParser(self)
        self._events: list = []
        self._error: ProtocolError | None = None
        self._failed = False
        self._paused = False  # after an upgrade request: nothing more is parsed
        self._in_head = False
        self._head_bytes = 0
        self._reset_message()

    def _reset_message(self) -> None:
        self._url = b""
        self._url_room = -1  # room left for the target on the request line; -1: not known yet
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_count = 0
        self._body_bytes = 0
        self._in_trailers = False

    # -- public API --------------------------------------------------------

    def feed(self, data: bytes) -> list:
        if self._failed or self._paused:
            return []
        events = self._events = []
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # WSGI cannot hand the raw stream to the app: serve the request,
            # then close (RequestHead.keep_alive is False for upgrades).
            self._paused = True
        except httptools.HttpParserError as exc:
            self._failed = True
            events.append((ERROR, self._error or ProtocolError(400, _describe(exc))))
            return events
        if self._in_head and self._head_bytes > self._max_head:
            self._failed = True
            if not self._headers and len(self._url) > self._limits.request_line:
                events.append((ERROR, ProtocolError(414, "request line too long")))
            else:
                events.append((ERROR, ProtocolError(431, "request header section too large")))
        return events

    def request_line_environ(self) -> dict[str, str]:
        """What is known of the request line of a refused request, for the access log."""
        if self._url_room < 0:  # the method is known once the target has begun
            return {}
        version = self._parser.get_http_version()
        return {"REQUEST_METHOD": self._parser.get_method().decode("latin-1"),
                "RAW_URI": self._url.decode("latin-1"),
                "SERVER_PROTOCOL": "-" if version == "0.0" else "HTTP/" + version}

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def in_head(self) -> bool:
        """True while a request head has begun but not finished arriving."""
        return self._in_head

    # -- httptools callbacks -----------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_message()
        self._in_head = True
        self._head_bytes = 0

    def on_url(self, piece: bytes) -> None:
        self._url += piece
        if self._url_room < 0:
            # The limit covers the whole line: method, SP, target, SP, "HTTP/1.1".
            self._url_room = self._limits.request_line - len(self._parser.get_method()) - 10
        if len(self._url) > self._url_room:
            self._fail(414, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self._limits.request_fields:
            self._fail(431, "too many header fields")
        if len(name) + len(value) + 2 > self._limits.request_field_size:
            self._fail(431, "header field too large")
        if self._in_trailers:
            return  # trailers are counted against the limits, never shown to the app
        self._headers.append((name, value.strip(b" \t")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = parser.get_http_version()
        if version not in _SUPPORTED_VERSIONS:
            self._fail(505, f"HTTP/{version} is not supported")
        method = parser.get_method()
        if method == b"CONNECT":
            self._fail(501, "CONNECT is not supported")
        target = self._url
        if target[:1] != b"/" and not _ABSOLUTE_FORM.match(target) \
                and not (target == b"*" and method == b"OPTIONS"):
            self._fail(400, "invalid request target")
        content_length: int | None = None
        codings: list[bytes] = []
        expect_continue = False
        hosts = 0
        for name, value in self._headers:
            if len(name) not in _FRAMING_NAME_LENGTHS:
                continue  # cheaper than lower-casing every name to find the four that matter
            lname = name.lower()
            if lname == b"host":
                hosts += 1
            elif lname == b"content-length":
                # llhttp already rejects duplicates and non-digits.
                content_length = int(value)
            elif lname == b"transfer-encoding":
                codings.extend(c.strip(b" \t").lower() for c in value.split(b","))
            elif lname == b"expect":
                if value.lower() != b"100-continue":
                    self._fail(417, "only 'Expect: 100-continue' is supported")
                expect_continue = version == "1.1"  # RFC 9110 10.1.1: ignored from HTTP/1.0
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            # RFC 9112 3.2: two Hosts are ambiguous, and HTTP/1.1 requires one.
            self._fail(400, "exactly one Host header is required")
        chunked = False
        if codings:
            if version == "1.0":
                self._fail(400, "Transfer-Encoding is not allowed in HTTP/1.0")
            if content_length is not None:
                self._fail(400, "both Content-Length and Transfer-Encoding")
            if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
                if b"chunked" in codings or not all(codings):
                    self._fail(400, "chunked must be the last transfer coding, exactly once")
                self._fail(501, "unsupported Transfer-Encoding")
            if len(codings) > 1:
                self._fail(501, "unsupported Transfer-Encoding")
            chunked = True
        limit = self._limits.request_body
        if limit and content_length is not None and content_length > limit:
            self._fail(413, "request body too large")
        upgrade = parser.should_upgrade()
        head = RequestHead(_METHOD_NAMES.get(method) or method.decode("ascii"), self._url, version,
                           self._headers, parser.should_keep_alive() and not upgrade,
                           content_length, chunked, expect_continue, upgrade)
        self._in_head = False
        self._in_trailers = True
        self._events.append((HEAD, head))

    def on_body(self, data: bytes) -> None:
        self._body_bytes += len(data)
        limit = self._limits.request_body
        if limit and self._body_bytes > limit:
            self._fail(413, "request body too large")
        self._events.append((DATA, data))

    def on_message_complete(self) -> None:
        self._events.append((END, None))

    def _fail(self, status: int, reason: str) -> None:
        self._error = ProtocolError(status, reason)
        raise self._error


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
