"""Requests the server must refuse, on a live server over TCP and a unix socket.

Each refusal has the right status, ``Connection: close`` and a short body;
nothing behind it on the connection reaches the app; and the worker goes on
serving. App errors and strict ``start_response`` checks live here too.
"""

from __future__ import annotations

import re

import pytest

from conftest import ResponseReader, module_server, read_until_close, wait_for

H = b"Host: test\r\n"
LIMITS = ["--limit-request-line", "200", "--limit-request-fields", "10",
          "--limit-request-field-size", "200", "--limit-request-body", "1000"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    access = tmp_path_factory.mktemp("access") / "access.log"
    srv = module_server(tmp_path_factory, ["--workers", "1", "--threads", "2", *LIMITS,
                                           "--access-log", str(access), "http_apps:raw_app"])
    srv.access_path = access
    yield srv
    srv.kill()
    assert "AssertionError" not in srv.log(), "an app failed wsgiref.validate"


def exchange(endpoint, data: bytes) -> tuple[list[tuple[int, dict, bytes]], bytes]:
    """Send ``data``, read every response until the server closes; also return the raw bytes."""
    with endpoint.connect() as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before everything was sent: the responses are still readable
        raw = read_until_close(sock)
    reader = ResponseReader(_Replay(raw))
    responses = []
    while reader.buffer or not reader.eof:
        try:
            responses.append(reader.next())
        except AssertionError:
            break
    return responses, raw


class _Replay:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, n: int) -> bytes:
        data, self.data = self.data[:n], self.data[n:]
        return data


def assert_refused(endpoint, server, data: bytes, status: int) -> None:
    follow = b"GET /closing?name=smuggled HTTP/1.1\r\n" + H + b"\r\n"
    responses, raw = exchange(endpoint, data + follow)
    assert len(responses) == 1, raw[:500]
    got, headers, body = responses[0]
    assert got == status, raw[:500]
    assert headers["connection"] == "close"
    assert len(body) < 200 and body.startswith(str(status).encode())
    # The worker keeps serving, and nothing after the bad request reached the app.
    with endpoint.connect() as sock:
        sock.sendall(b"GET /read-some?n=0 HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
        assert read_until_close(sock).startswith(b"HTTP/1.1 200 ")
    assert "smuggled" not in server.access_path.read_text()
    assert "closed smuggled" not in server.log()


MALFORMED = [
    ("garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400),
    ("space in target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("no host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("header without colon", b"GET / HTTP/1.1\r\n" + H + b"oops\r\n\r\n", 400),
    ("bare LF", b"GET / HTTP/1.1\nHost: test\n\n", 400),
    ("http/2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("request line too long", b"GET /" + b"a" * 300 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("too many fields", b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(10)) + b"\r\n", 431),
    ("field too large", b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * 300 + b"\r\n\r\n", 431),
    ("declared body too large", b"POST /digest HTTP/1.1\r\n" + H + b"Content-Length: 1001\r\n\r\n" + b"x" * 1001, 413),
    ("transfer coding without chunked last", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    ("unsupported transfer coding", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ("CONNECT", b"CONNECT test:443 HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("unknown expectation", b"GET / HTTP/1.1\r\n" + H + b"Expect: teapot\r\n\r\n", 417),
]

SMUGGLING = [
    ("CL and TE", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("TE and CL", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
    ("duplicate CL", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0\r\nContent-Length: 0\r\n\r\n"),
    ("CL list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0, 0\r\n\r\n"),
    ("non-numeric CL", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x0\r\n\r\n"),
    ("chunked not last", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
    ("TE with vertical tab", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n"),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n folded\r\n\r\n"),
    ("space before colon", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    ("NUL in value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n"),
    ("CR in value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n"),
    ("NUL in name", b"GET / HTTP/1.1\r\n" + H + b"X\x00A: b\r\n\r\n"),
]

BAD_CHUNKS = [
    ("chunk size with 0x", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("chunk size with space", b"5 \r\nhello\r\n0\r\n\r\n"),
    ("chunk size overflow", b"1000000000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("chunk extension with control char", b"5;a\x01b\r\nhello\r\n0\r\n\r\n"),
    ("chunk data overrun", b"2\r\nhello\r\n0\r\n\r\n"),
    ("chunk ends with bare LF", b"5\r\nhello\n0\r\n\r\n"),
]


@pytest.mark.parametrize("name, data, status", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_requests_are_refused(endpoint, server, name, data, status):
    assert_refused(endpoint, server, data, status)


@pytest.mark.parametrize("name, data", SMUGGLING, ids=[s[0] for s in SMUGGLING])
def test_smuggling_attempts_are_refused(endpoint, server, name, data):
    assert_refused(endpoint, server, data, 400)


@pytest.mark.parametrize("name, chunks", BAD_CHUNKS, ids=[c[0] for c in BAD_CHUNKS])
def test_bad_chunked_bodies_are_refused(endpoint, server, name, chunks):
    head = b"POST /digest HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    assert_refused(endpoint, server, head + chunks, 400)


def test_chunked_body_over_the_limit_is_413(endpoint, server):
    head = b"POST /digest HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    assert_refused(endpoint, server, head + b"258\r\n" + b"x" * 600 + b"\r\n" + b"258\r\n" + b"x" * 600
                   + b"\r\n0\r\n\r\n", 413)


def test_app_that_swallows_a_body_error_cannot_answer(endpoint, server):
    head = b"POST /swallow-body-error HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    assert_refused(endpoint, server, head + b"zz\r\n", 400)
    server.wait_log("swallowed ProtocolError")


def test_body_at_the_limit_is_accepted(endpoint):
    responses, _ = exchange(endpoint, b"POST /echo HTTP/1.1\r\n" + H + b"Connection: close\r\n"
                                      b"Content-Length: 1000\r\n\r\n" + b"x" * 1000)
    assert responses[0][0] == 200 and len(responses[0][2]) == 1000


# -- app errors -----------------------------------------------------------------------------------


def test_app_exception_before_the_response_is_500(endpoint, server):
    responses, _ = exchange(endpoint, b"GET /error HTTP/1.1\r\n" + H + b"\r\n")
    status, headers, body = responses[0]
    assert (status, headers["connection"]) == (500, "close")
    assert b"boom" not in body  # no details leak to the client
    server.wait_log(r"(?s)Traceback.*RuntimeError: boom before the response")


@pytest.mark.parametrize("path, message", [
    ("/error-after", "RuntimeError: boom after the response started"),
    ("/exc-after-head", "KeyError: 'late'"),
])
def test_app_exception_after_the_response_started_closes(endpoint, server, path, message):
    _, raw = exchange(endpoint, f"GET {path} HTTP/1.1\r\n".encode() + H + b"\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert not body.endswith(b"0\r\n\r\n")  # no last chunk: the client can tell it was cut short
    server.wait_log(re.escape(message))


def test_exc_info_replaces_a_response_not_yet_sent(endpoint):
    responses, _ = exchange(endpoint, b"GET /exc-info HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
    assert (responses[0][0], responses[0][2]) == (503, b"sorr")


@pytest.mark.parametrize("path", [
    "/bad-header?kind=crlf", "/bad-header?kind=nul", "/bad-header?kind=hop", "/bad-header?kind=bytes",
    "/bad-header?kind=name", "/bad-status", "/twice", "/str-body",
])
def test_strict_start_response(endpoint, server, path):
    responses, raw = exchange(endpoint, f"GET {path} HTTP/1.1\r\n".encode() + H + b"\r\n")
    assert [r[0] for r in responses] == [500]
    assert b"Injected" not in raw and b"never" not in raw
    wait_for(lambda: f"error handling GET {path}" in server.log(), message="the error logged")


def test_worker_survives_everything_above(endpoint, server):
    for _ in range(3):
        exchange(endpoint, b"GET /error HTTP/1.1\r\n" + H + b"\r\n")
    responses, _ = exchange(endpoint, b"GET /read-some?n=0 HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n")
    assert responses[0][0] == 200
    assert len(set(server.booted_pids())) == 1  # never replaced
