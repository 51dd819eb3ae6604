"""Sans-I/O response framing: status line, headers, and how the body is delimited.

Given what the app declared and what the request allows, decide once per
response whether the body is sent with its Content-Length, chunked, delimited
by closing the connection, or not at all (HEAD, 1xx, 204, 304).
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus

from ..errors import ProtocolError
from ..speedups import compiled as _speedups
from .records import ResponsePlan

# Body framing modes.
LENGTH = 0
CHUNKED = 1
CLOSE = 2
NO_BODY = 3

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]+\Z")
_STATUS = re.compile(r"[1-9][0-9]{2} [^\x00-\x08\x0a-\x1f\x7f]*\Z")

REASONS = {s.value: s.phrase for s in HTTPStatus}


class ResponseHeadError(ValueError):
    """The app's status or headers cannot be sent as they are."""


class DateCache:
    """The Date header changes once a second; formatting it per request is waste."""

    __slots__ = ("_second", "_line")

    def __init__(self) -> None:
        self._second = -1
        self._line = ""

    def line(self) -> str:
        """The whole ``Date: ...`` header line, CRLF included."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._line = f"Date: {formatdate(now, usegmt=True)}\r\n"
        return self._line


DATE = DateCache()


_NAMES: dict[str, str] = {}  # header names already validated -> lower case
_STATUSES: dict[str, int] = {}  # status lines already validated -> code
_ITEMS: dict[tuple[str, str], str] = {}  # (name, value) headers already validated -> lower-case name
_NOTABLE = HOP_BY_HOP | {"content-length", "date", "server"}
_CACHE_LIMIT = 4096


def _check_status(status: object) -> int:
    if type(status) is not str:
        raise ResponseHeadError(f"status must be str, got {type(status).__name__}")
    if not _STATUS.match(status):
        raise ResponseHeadError(f"invalid status {status!r}")
    try:
        status.encode("latin-1")
    except UnicodeEncodeError:
        raise ResponseHeadError(f"status must be latin-1: {status!r}") from None
    return _remember(_STATUSES, status, int(status[:3]))


def _remember(cache: dict, key, value):
    """Store in a cache of validated values, emptied when full: apps send few distinct ones."""
    if len(cache) > _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


def _check_item(item: object) -> str:
    """Validate one ``(name, value)`` header; returns the lower-case name."""
    if type(item) is not tuple or len(item) != 2:
        raise ResponseHeadError(f"each header must be a (name, value) tuple, got {item!r}")
    name, value = item
    if type(name) is not str:
        raise ResponseHeadError(f"header names must be str, got {name!r}")
    lname = _NAMES.get(name)
    if lname is None:
        if not _TOKEN.match(name):
            raise ResponseHeadError(f"invalid header name {name!r}")
        lname = _remember(_NAMES, name, name.lower())
    if type(value) is not str:
        raise ResponseHeadError(f"header values must be str: {item!r}")
    if _BAD_VALUE.search(value):
        raise ResponseHeadError(f"invalid character in value of header {name!r}")
    if not value.isascii():
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ResponseHeadError(f"value of header {name!r} must be latin-1") from None
    return _remember(_ITEMS, item, lname)


def check_start_response(status: object, headers: object) -> ResponsePlan:
    """Validate ``start_response`` arguments strictly (PEP 3333 plus response splitting).

    Hop-by-hop headers belong to the server; ``Connection: close`` is honoured
    (the connection closes after the response), any other is an app bug.
    Status lines and whole headers seen before skip their checks: an app sends
    the same few on nearly every response.
    """
    code = _STATUSES.get(status) if type(status) is str else None
    if code is None:
        code = _check_status(status)
    if type(headers) is not list:
        raise ResponseHeadError(f"headers must be a list, got {type(headers).__name__}")
    content_length: int | None = None
    app_wants_close = has_date = has_server = False
    checked = _ITEMS.get
    for item in headers:
        try:
            lname = checked(item)
        except TypeError:  # unhashable: certainly not a valid header
            lname = None
        if lname is None:
            lname = _check_item(item)
        if lname in _NOTABLE:
            value = item[1]
            if lname == "content-length":
                if content_length is not None or not (
                        (value.isdigit() and value.isascii()) or _DIGITS.match(value.strip(" \t"))):
                    raise ResponseHeadError(f"invalid Content-Length {value!r}")
                content_length = int(value)
            elif lname == "date":
                has_date = True
            elif lname == "server":
                has_server = True
            elif lname == "connection" and value.strip().lower() == "close":
                app_wants_close = True
            else:
                raise ResponseHeadError(
                    f"hop-by-hop header {item[0]!r} is set by the server, not the app")
    kept = [h for h in headers if h[0].lower() != "connection"] if app_wants_close else list(headers)
    if content_length is not None and (code < 200 or code == 204):
        # RFC 9110 8.6: never sent with these; the app's value would mislead the client.
        kept = [h for h in kept if h[0].lower() != "content-length"]
        content_length = None
    return ResponsePlan(status, code, kept, content_length,  # type: ignore[arg-type]  # a str: checked
                        app_wants_close, has_date, has_server)


def body_mode(plan: ResponsePlan, method: str, version: str) -> int:
    if method == "HEAD" or not plan.may_have_body:
        return NO_BODY
    if plan.content_length is not None:
        return LENGTH
    if version == "1.1":
        return CHUNKED
    return CLOSE


def render_head(plan: ResponsePlan, mode: int, keep_alive: bool, server: str,
                http10: bool = False) -> bytes:
    """The status line and header block, ready to send.

    ``keep_alive`` is the caller's decision; a close-delimited body forces a close.
    HTTP/1.0 clients must be told explicitly that the connection stays open.
    """
    lines = ["HTTP/1.1 ", plan.status, "\r\n"]
    for name, value in plan.headers:
        lines.append(f"{name}: {value}\r\n")
    if not plan.has_date:
        lines.append(DATE.line())
    if server and not plan.has_server:
        lines.append(f"Server: {server}\r\n")
    if mode == CHUNKED:
        lines.append("Transfer-Encoding: chunked\r\n")
    if not keep_alive or mode == CLOSE:
        lines.append("Connection: close\r\n\r\n")
    elif http10:
        lines.append("Connection: keep-alive\r\n\r\n")
    else:
        lines.append("\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise ResponseHeadError("status and header values must be latin-1") from None


# The definitions; the tests compare the C ones with them.
python_check_start_response = check_start_response
python_render_head = render_head

if _speedups is not None:
    # The same functions in C; they call the ones above for whatever they do not take, and
    # the check shares the caches those fill.
    _speedups.check_setup(python_check_start_response, ResponsePlan, _STATUSES, _ITEMS, _NOTABLE)
    _speedups.response_setup(python_render_head, DATE.line, CHUNKED, CLOSE)
    check_start_response = _speedups.check_start_response
    render_head = _speedups.render_head


def error_response(error: ProtocolError, server: str) -> bytes:
    """A complete short response for a request we refuse; the connection closes after it."""
    code = error.status
    reason = REASONS.get(code, "Error")
    body = f"{code} {reason}: {error.reason}\n".encode("latin-1", "replace")
    plan = ResponsePlan(f"{code} {reason}", code, [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ], len(body), True)
    return render_head(plan, LENGTH, False, server) + body


def simple_response(code: int, body: bytes, server: str, keep_alive: bool = False,
                    content_type: str = "text/plain; charset=utf-8") -> bytes:
    plan = ResponsePlan(f"{code} {REASONS.get(code, 'Error')}", code, [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
    ], len(body), not keep_alive)
    return render_head(plan, LENGTH, keep_alive, server) + body


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
