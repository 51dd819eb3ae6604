"""Sans-I/O HTTP/1.1 request parser: bytes in, events out.

The common head, whole in one piece, is taken by the compiled scanner when it is
built (``sharedsock.speedups``); it takes only heads the path below would take
identically. Every other head goes to llhttp (through httptools), which is strict
about its syntax; it is fed the head's bytes and nothing else, so it always stops
where we do, and a fresh one takes each head. Bodies are
framed here: a Content-Length body is counted (feeding it to llhttp would copy
it once more), and chunked framing is decoded by a small state machine, because
llhttp refuses chunk extensions with the whitespace RFC 9112 7.1.1 allows and
cannot refuse an oversized chunk before its data arrives. The rest is policy
llhttp leaves to us: limits, versions, request target and Host syntax,
Transfer-Encoding lists, trailers, and the rule that nothing after an invalid
request is ever served. Keeping it all here, away from
sockets, lets the tests feed a request whole, byte by byte or in random pieces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httptools

from ..errors import ProtocolError
from ..speedups import compiled as _speedups
from ..speedups import scan_head as _scan_head
from .records import RequestHead

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


_SUPPORTED_VERSIONS = ("1.1", "1.0")
_FRAMING_NAME_LENGTHS = frozenset(len(n) for n in (b"host", b"expect", b"content-length",
                                                    b"transfer-encoding"))
_METHOD_NAMES = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}
# The partial head of the chunk in which a request began is counted whole, so
# allow one read (sockio.READ_SIZE, 80 KiB) of slack on top of the exact bound.
_SLACK = 65536 + 16384

# RFC 3986 authority pieces, as byte sets for bytes.translate (deleting the allowed
# bytes leaves nothing exactly when every byte is allowed).
_UNRESERVED_SUB_DELIMS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;="
_REG_NAME = _UNRESERVED_SUB_DELIMS + b"%"
_IPV6 = b"0123456789ABCDEFabcdef:."
_PCT = re.compile(rb"%(?![0-9A-Fa-f]{2})")  # a '%' not starting a pct-encoded octet
_IPV_FUTURE = re.compile(rb"[vV][0-9A-Fa-f]+\.[" + re.escape(_UNRESERVED_SUB_DELIMS) + rb":]+")
_ABSOLUTE_FORM = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)")

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# RFC 9112 7.1 and 7.1.1: chunk-size [ chunk-ext ] CRLF, with BWS around ';' and '='.
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN
                         + rb"|" + _QUOTED + rb"))?)*\r\n")
_HEX = b"0123456789ABCDEFabcdef"
_FIELD_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*[\t \x21-\x7e\x80-\xff]*\r\n")
_FRAMING_TRAILERS = frozenset((b"content-length", b"transfer-encoding"))
_MAX_CHUNK_DIGITS = 16  # beyond 64 bits another parser could wrap around: never a size we accept

# Body framing states.
_NO_BODY = 0
_LENGTH = 1
_CHUNK_SIZE = 2  # reading a chunk-size line
_CHUNK_DATA = 3
_CHUNK_CRLF = 4  # the CRLF that ends a chunk's data
_TRAILERS = 5
# A Content-Length body of at least this many bytes arriving with its head becomes a
# memoryview of the received bytes: slicing it off would copy it all.
_VIEW_MIN = 4096


class RequestParser:
    """Turns the bytes of one connection into HEAD / DATA / END events.

    ``feed`` returns the events the new bytes completed. When the stream stops
    being valid HTTP the last event is ``(ERROR, ProtocolError)`` and every
    later feed returns nothing, so a pipelined request behind a bad one can
    never be served, while the good requests before it still are.
    """

    def __init__(self, limits: Limits = Limits()) -> None:
        self._limits = limits
        # Made for the first head the compiled scanner leaves to it (most connections never
        # need one), and anew after each head it parsed.
        self._parser: httptools.HttpRequestParser | None = None
        self._stale = True  # no llhttp yet, or it has parsed a head: the next head gets a fresh one
        self._events: list = []
        self._error: ProtocolError | None = None
        self._failed = False
        self._paused = False  # after an upgrade request: nothing more is parsed
        self._closing = False  # the last request closes the connection: nothing may follow it
        self.in_head = False  # a head has begun but not finished arriving (read per request: no property)
        self._head_bytes = 0
        self._tail = b""  # the last bytes of a head still arriving, to find a CRLFCRLF split in two
        self._line: bytes | None = b""  # the request line while it arrives in pieces; None once whole
        self._line_length = -1
        self._head: RequestHead | None = None  # set by on_headers_complete
        self._scanned: RequestHead | None = None  # the last head the compiled scanner took
        self._current: RequestHead | None = None  # the request whose body is being read
        self._state = _NO_BODY
        self._remaining = 0  # bytes left of the Content-Length body or of the current chunk
        self._pending = b""  # a partial chunk-size or trailer line
        self._reset_message()

    def _new_llhttp(self) -> httptools.HttpRequestParser:
        parser = httptools.HttpRequestParser(self)
        # "chunked," is a valid list (RFC 9110 5.6.1.2) that llhttp refuses; the
        # codings are checked in on_headers_complete, and llhttp never sees a chunked body.
        parser.set_dangerous_leniencies(lenient_transfer_encoding=True)
        return parser

    def _reset_message(self) -> None:
        self._url = b""
        self._url_room = -1  # room left for the target on the request line; -1: not known yet
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_count = 0
        self._body_bytes = 0

    # -- public API --------------------------------------------------------

    def feed(self, data: bytes) -> list:
        if self._failed or self._paused:
            return []
        events = self._events = []
        try:
            while data:
                state = self._state
                if state == _NO_BODY:
                    data = self._feed_head(data)
                elif state == _LENGTH:
                    data = self._feed_length(data)
                else:
                    data = self._feed_chunked(data)
                if self._paused:
                    break
        except ProtocolError as error:
            self._failed = True
            events.append((ERROR, error))
        return events

    def request_line_environ(self) -> dict[str, str]:
        """What is known of the request line of a refused request, for the access log."""
        scanned = self._scanned
        if scanned is not None:
            return {"REQUEST_METHOD": scanned.method, "RAW_URI": scanned.target.decode("latin-1"),
                    "SERVER_PROTOCOL": "HTTP/" + scanned.version}
        if self._url_room < 0:  # the method is known once the target has begun
            return {}
        version = self._parser.get_http_version()
        return {"REQUEST_METHOD": self._parser.get_method().decode("latin-1"),
                "RAW_URI": self._url.decode("latin-1"),
                "SERVER_PROTOCOL": "-" if version == "0.0" else "HTTP/" + version}

    @property
    def failed(self) -> bool:
        return self._failed

    # -- the head ----------------------------------------------------------

    def _feed_head(self, data: bytes) -> bytes:
        """Feed llhttp the head's bytes (never more); returns what follows the head."""
        if not self.in_head:
            if data[0] in b"\r\n":
                # RFC 9112 2.2: empty lines before a request line are ignored.
                data = data.lstrip(b"\r\n")
                if not data:
                    return data
            if self._closing:
                self._url_room = -1  # nothing of this request line is known to the access log
                self._scanned = None
                raise ProtocolError(400, "request after one that closes the connection")
            end = data.find(b"\r\n\r\n")
            if end != -1:  # the common case: a whole head in one piece
                end += 4
                if _scan_head is not None:
                    # The compiled scanner takes heads in a strict grammar (``_headscan.h``)
                    # that llhttp and ``on_headers_complete`` would take identically, and
                    # makes their checks left over (a Host for HTTP/1.1, a valid one, the
                    # body limit). A head it declines goes to llhttp, which decides: this
                    # path never refuses anything.
                    limits = self._limits
                    scanned = self._scanned = _scan_head(data, end, limits.request_line,
                                                         limits.request_fields, limits.request_field_size,
                                                         limits.request_body)
                    if scanned is not None:
                        events = self._events
                        events.append((HEAD, scanned))
                        if scanned.has_body:
                            self._head = scanned
                            return self._head_done(data, end, None)
                        # What _head_done does for a head with no body (the scanner takes no
                        # chunked or upgrade request): one call fewer for nearly every GET.
                        self._current = scanned
                        events.append((END, None))
                        if not scanned.keep_alive:
                            self._closing = True
                        return data[end:] if end != len(data) else b""
                self._fresh_llhttp()
                self._line_length = data.find(b"\r\n")
                return self._head_done(data, end, data if end == len(data) else data[:end])
            self._fresh_llhttp()
            self.in_head = True
            self._head_bytes = 0
            self._tail = b""
            self._line = b""
            self._line_length = -1
            end = -1
        else:
            tail = self._tail
            end = (tail + data).find(b"\r\n\r\n")
            if end != -1:
                end += 4 - len(tail)
        head = data if end == -1 or end == len(data) else data[:end]
        line_error = self._take_request_line(head) if self._line is not None else ""
        self._feed_llhttp(head)
        if line_error:
            raise ProtocolError(400, line_error)
        if end != -1:
            self.in_head = False  # a head has begun but not finished arriving (read per request: no property)
            return self._head_done(data, end, None)
        self._head_bytes += len(data)
        if self._head_bytes > self._limits.head_bytes + _SLACK:
            if self._line is not None and len(self._url) > self._limits.request_line:
                raise ProtocolError(414, "request line too long")
            raise ProtocolError(431, "request header section too large")
        self._tail = (self._tail + data)[-3:]
        return b""

    def _fresh_llhttp(self) -> None:
        """Before llhttp parses a head: a new one if there is none or it parsed one already."""
        if self._stale:
            self._parser = self._new_llhttp()
            self._stale = False

    def _feed_llhttp(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # WSGI cannot hand the raw stream to the app: serve the request,
            # then close (RequestHead.keep_alive is False for upgrades).
            pass
        except httptools.HttpParserError as exc:
            raise self._error or ProtocolError(400, _describe(exc)) from None

    def _head_done(self, data: bytes, end: int, head: bytes | None) -> bytes:
        """The head ended at ``end`` in ``data`` (``head``: its bytes, still to be fed to llhttp)."""
        if head is not None:
            try:
                self._parser.feed_data(head)
            except httptools.HttpParserUpgrade:
                pass
            except httptools.HttpParserError as exc:
                raise self._error or ProtocolError(400, _describe(exc)) from None
        request = self._head
        if request is None:  # llhttp and we disagree on where the head ends: trust neither
            raise ProtocolError(400, "malformed request head")
        self._head = None
        self._current = request
        if request.chunked:  # decoded here, not by llhttp
            self._state = _CHUNK_SIZE
            self._pending = b""
        elif request.content_length:
            # Counted here, never fed to llhttp: its on_body would copy every piece once more.
            self._state = _LENGTH
            self._remaining = request.content_length
            if len(data) - end >= _VIEW_MIN:  # the body is handed on as a view, not a copy
                return self._feed_length(memoryview(data)[end:])
        else:
            self._events.append((END, None))
            if request.upgrade:
                self._paused = True
            elif not request.keep_alive:
                self._closing = True
        return data[end:] if end != len(data) else b""

    def _take_request_line(self, data: bytes) -> str:
        """Collect the request line of a head arriving in pieces; a reason to refuse it, or "".

        llhttp reads a line without a version as HTTP/0.9 and then waits for
        header fields that will never come; RFC 9112 3 asks for a 400 at once.
        """
        end = data.find(b"\n")
        if end == -1:
            if len(self._line) <= self._limits.request_line:
                self._line += data
            return ""
        line = self._line + data[:end + 1]
        self._line = None
        self._line_length = len(line) - 2
        if line[-11:-5] != b" HTTP/" or line[-2:-1] != b"\r":
            return "request line without an HTTP version"
        return ""

    # -- httptools callbacks -----------------------------------------------

    def on_message_begin(self) -> None:
        self._scanned = None
        self._reset_message()

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
        self._headers.append((name, value.strip(b" \t")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        method = parser.get_method()
        target = self._url
        if self._line_length != len(method) + len(target) + 10:
            # llhttp takes a missing version for HTTP/0.9, and any run of spaces as one.
            self._fail(400, "request line is not 'method SP target SP HTTP-version'")
        version = parser.get_http_version()
        if version not in _SUPPORTED_VERSIONS:
            self._fail(505, f"HTTP/{version} is not supported")
        if method == b"CONNECT":
            self._fail(501, "CONNECT is not supported")
        if target[:1] != b"/":
            if target == b"*":
                if method != b"OPTIONS":
                    self._fail(400, "'*' is a request target for OPTIONS only")
            else:
                absolute = _ABSOLUTE_FORM.match(target)
                if absolute is None or not absolute.group(1) or not valid_host(absolute.group(1)):
                    self._fail(400, "invalid request target")
        content_length: int | None = None
        codings: list[bytes] | None = None
        expect_continue = False
        hosts = 0
        for name, value in self._headers:
            if len(name) not in _FRAMING_NAME_LENGTHS:
                continue  # cheaper than lower-casing every name to find the four that matter
            lname = name.lower()
            if lname == b"host":
                hosts += 1
                if not (_HOSTS.get(value) or valid_host(value)):
                    self._fail(400, "invalid Host header")
            elif lname == b"content-length":
                # llhttp already rejects duplicates, lists and non-digits.
                content_length = int(value)
            elif lname == b"transfer-encoding":
                if codings is None:
                    codings = []
                codings.extend(_list_elements(value))
            elif lname == b"expect":
                for expectation in _list_elements(value):
                    if expectation != b"100-continue":
                        self._fail(417, "only 'Expect: 100-continue' is supported")
                    expect_continue = version == "1.1"  # RFC 9110 10.1.1: ignored from HTTP/1.0
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            # RFC 9112 3.2: two Hosts are ambiguous, and HTTP/1.1 requires one.
            self._fail(400, "exactly one Host header is required")
        chunked = False
        if codings is not None:
            if version == "1.0":
                self._fail(400, "Transfer-Encoding is not allowed in HTTP/1.0")
            if content_length is not None:
                self._fail(400, "both Content-Length and Transfer-Encoding")
            if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
                # RFC 9112 6.3: the body length cannot be determined; 400, then close.
                self._fail(400, "chunked must be the last transfer coding, exactly once")
            if len(codings) > 1:
                self._fail(501, "unsupported Transfer-Encoding")
            chunked = True
        limit = self._limits.request_body
        if limit and content_length is not None and content_length > limit:
            self._fail(413, "request body too large")
        upgrade = parser.should_upgrade()
        # llhttp keeps this head's version until it parses another: a refusal of the next
        # head before its version would be logged with this one's. The next head gets a fresh one.
        self._stale = True
        head = RequestHead(_METHOD_NAMES.get(method) or method.decode("ascii"), target, version,
                           self._headers, parser.should_keep_alive() and not upgrade,
                           content_length, chunked, expect_continue, upgrade)
        self._head = head
        self._events.append((HEAD, head))

    def on_body(self, data: bytes) -> None:
        # llhttp is fed heads only: a body it reports means its framing and ours disagree.
        self._fail(400, "malformed request head")

    def _fail(self, status: int, reason: str) -> None:
        self._error = ProtocolError(status, reason)
        raise self._error

    # -- bodies ------------------------------------------------------------

    def _finish(self) -> None:
        self._events.append((END, None))
        self._state = _NO_BODY
        request = self._current
        if request.upgrade:
            self._paused = True
        elif not request.keep_alive:
            self._closing = True

    def _feed_length(self, data: bytes | memoryview) -> bytes:
        """A DATA event may be a memoryview of the received bytes (see ``_VIEW_MIN``)."""
        left = self._remaining
        if len(data) < left:
            self._remaining = left - len(data)
            self._events.append((DATA, data))
            return b""
        if len(data) == left:
            self._events.append((DATA, data))
            self._finish()
            return b""
        self._events.append((DATA, data[:left]))
        self._finish()
        return bytes(data[left:])  # a pipelined next request: the head parser reads bytes

    def _feed_chunked(self, data: bytes) -> bytes:
        events = self._events
        while data:
            state = self._state
            if state == _CHUNK_DATA:
                left = self._remaining
                if len(data) < left:
                    self._remaining = left - len(data)
                    events.append((DATA, data))
                    return b""
                events.append((DATA, data if len(data) == left else data[:left]))
                data = data[left:]
                self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if self._pending:  # a lone CR arrived last time
                    data = self._pending + data
                    self._pending = b""
                if data[:2] != b"\r\n":
                    if data == b"\r":
                        self._pending = data
                        return b""
                    raise ProtocolError(400, "chunk data not followed by CRLF")
                data = data[2:]
                self._state = _CHUNK_SIZE
            else:
                end = data.find(b"\n")
                if end == -1:
                    self._pending += data
                    if len(self._pending) > self._limits.request_field_size:
                        if state == _TRAILERS:
                            raise ProtocolError(431, "trailer field too large")
                        raise ProtocolError(400, "chunk size line too long")
                    return b""
                line = data[:end + 1]
                if self._pending:
                    line = self._pending + line
                    self._pending = b""
                data = data[end + 1:]
                if state == _CHUNK_SIZE:
                    self._chunk_size(line)
                elif line == b"\r\n":
                    self._finish()
                    return data
                else:
                    self._trailer(line)
        return data

    def _chunk_size(self, line: bytes) -> None:
        digits = line[:-2]
        if not digits or digits.translate(None, _HEX) or line[-2:-1] != b"\r":
            match = _CHUNK_LINE.fullmatch(line)
            if match is None:
                raise ProtocolError(400, "invalid chunk size line")
            digits = match.group(1)
        if len(digits) > _MAX_CHUNK_DIGITS and len(digits.lstrip(b"0")) > _MAX_CHUNK_DIGITS:
            raise ProtocolError(400, "chunk size out of range")
        size = int(digits, 16)
        self._body_bytes += size
        limit = self._limits.request_body
        if limit and self._body_bytes > limit:
            raise ProtocolError(413, "request body too large")
        if size:
            self._remaining = size
            self._state = _CHUNK_DATA
        else:
            self._state = _TRAILERS

    def _trailer(self, line: bytes) -> None:
        """Check and count a trailer field; trailers are never shown to the app (RFC 9110 6.5.1)."""
        self._header_count += 1
        if self._header_count > self._limits.request_fields:
            raise ProtocolError(431, "too many header fields")
        if len(line) - 2 > self._limits.request_field_size:
            raise ProtocolError(431, "trailer field too large")
        match = _FIELD_LINE.fullmatch(line)
        if match is None:
            raise ProtocolError(400, "invalid trailer field")
        if match.group(1).lower() in _FRAMING_TRAILERS:
            raise ProtocolError(400, "framing field in the trailers")


def _list_elements(value: bytes) -> list[bytes]:
    """The elements of a list field, lower-cased; empty ones are ignored (RFC 9110 5.6.1.2)."""
    if b"," not in value:
        value = value.strip(b" \t").lower()
        return [value] if value else []
    return [e for e in (e.strip(b" \t").lower() for e in value.split(b",")) if e]


_HOSTS: dict[bytes, bool] = {}  # Host values already judged: a server sees few distinct ones


def valid_host(value: bytes) -> bool:
    """Whether ``value`` is ``uri-host [ ":" port ]`` (RFC 9112 3.2, RFC 3986 3.2.2); no userinfo."""
    known = _HOSTS.get(value)
    if known is None:
        known = _judge_host(value)
        if len(value) <= 300:
            if len(_HOSTS) >= 1024:
                _HOSTS.clear()
            _HOSTS[value] = known
    return known


def _judge_host(value: bytes) -> bool:
    if value[:1] == b"[":
        close = value.find(b"]")
        if close == -1:
            return False
        literal, port = value[1:close], value[close + 1:]
        if port and port[:1] != b":":
            return False
        if literal[:1] in b"vV" and literal:
            if _IPV_FUTURE.fullmatch(literal) is None:
                return False
        elif not _valid_ipv6(literal):
            return False
        port = port[1:]
    else:
        host, _, port = value.partition(b":")
        if host.translate(None, _REG_NAME) or (b"%" in host and _PCT.search(host)):
            return False
    return not port or port.isdigit()


def _valid_ipv6(literal: bytes) -> bool:
    import ipaddress

    if not literal or literal.translate(None, _IPV6):
        return False  # also rules out zone identifiers, which ipaddress would accept
    try:
        ipaddress.IPv6Address(literal.decode("ascii"))
    except ValueError:
        return False
    return True


if _speedups is not None:
    # The compiled scanner makes the RequestHead itself, and shares the Host cache and check.
    _speedups.head_setup(RequestHead, _HOSTS, valid_host)


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]
