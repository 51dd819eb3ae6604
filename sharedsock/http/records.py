"""The two records the compiled accelerator makes by filling their slots.

They live apart from the parser and the response code, importing nothing, so that
``sharedsock.speedups`` can compare their ``__slots__`` with what an extension
fills before anything binds to it: a field added here and not in ``_slots.c`` or
``_response.c`` leaves the extension unused ("out of date"), never half used.
"""

from __future__ import annotations


class RequestHead:
    """The request line and headers, exactly as received (header names keep their case).

    The compiled scanner makes these without running ``__init__`` (``_slots.c``).
    """

    __slots__ = ("method", "target", "version", "headers", "keep_alive", "content_length",
                 "chunked", "expect_continue", "upgrade", "has_body")

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
        self.has_body = chunked or bool(content_length)  # read twice per request: not a property

    def __repr__(self) -> str:
        return f"<RequestHead {self.method} {self.target!r} HTTP/{self.version}>"


class ResponsePlan:
    """What the app asked for, checked; produced by ``check_start_response``.

    The compiled check makes these without running ``__init__`` (``_slots.c``).
    """

    __slots__ = ("status", "status_code", "headers", "content_length", "app_wants_close",
                 "has_date", "has_server", "may_have_body")

    def __init__(self, status: str, status_code: int, headers: list[tuple[str, str]],
                 content_length: int | None, app_wants_close: bool, has_date: bool = False,
                 has_server: bool = False) -> None:
        self.status = status
        self.status_code = status_code
        self.headers = headers
        self.content_length = content_length
        self.app_wants_close = app_wants_close
        self.has_date = has_date
        self.has_server = has_server
        # False for the statuses that never carry a body (RFC 9110 15.2, 15.3.5, 15.4.5).
        self.may_have_body = status_code >= 200 and status_code != 204 and status_code != 304
