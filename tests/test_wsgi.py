"""PEP 3333 as the app sees it: the environ, wsgi.input, wsgi.errors, start_response.

The live server here runs 2 single-threaded workers under ``--root-path /app``
with the Server header suppressed. WebTest drives it through a small WSGI app
that forwards each request over a real socket, so forms, uploads and cookies
are built by WebTest and parsed by WebOb inside the real server.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
from urllib.parse import quote

import pytest
import webtest

from conftest import ResponseReader, module_server, read_until_close
from sharedsock.http import response as rsp
from sharedsock.wsgi import FileWrapper, InputStream, split_target

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = module_server(tmp_path_factory, ["--workers", "2", "--threads", "1", "--root-path", "/app",
                                           "--server-header", "", "http_apps:raw_app"], workers=2)
    yield srv
    srv.kill()
    assert "AssertionError" not in srv.log(), "an app failed wsgiref.validate"


def environ_of(endpoint, request: bytes) -> dict:
    with endpoint.connect() as sock:
        sock.sendall(request)
        status, _, body = ResponseReader(sock).next()
    assert status == 200, body
    return json.loads(body)


def get_environ(endpoint, target: str = "/app/environ", *headers: str) -> dict:
    lines = [f"GET {target} HTTP/1.1", "Host: test.example:8080", *headers, "", ""]
    return environ_of(endpoint, "\r\n".join(lines).encode("latin-1"))


# -- the environ, live -----------------------------------------------------------------------


def test_basic_environ(endpoint):
    env = get_environ(endpoint, "/app/environ?a=1&b=%20x")
    assert env["REQUEST_METHOD"] == "GET"
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/environ")
    assert env["QUERY_STRING"] == "a=1&b=%20x"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert (env["SERVER_NAME"], env["HTTP_HOST"]) == ("test.example", "test.example:8080")
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.version"] == [1, 0]
    assert (env["wsgi.multithread"], env["wsgi.multiprocess"], env["wsgi.run_once"]) == (False, True, False)
    assert env["wsgi.input_terminated"] is True and env["has_file_wrapper"] is True
    assert "CONTENT_LENGTH" not in env and "CONTENT_TYPE" not in env


def test_remote_and_server_address(endpoint):
    env = get_environ(endpoint)
    if endpoint.url.startswith("unix:"):
        assert env["REMOTE_ADDR"] == ""
    else:
        assert env["REMOTE_ADDR"] == "127.0.0.1"
        assert int(env["REMOTE_PORT"]) > 0
        assert env["SERVER_PORT"] == str(endpoint.port)


def test_percent_encoded_path_is_decoded_latin1_round_trip(endpoint):
    env = get_environ(endpoint, "/app/environ/caf%C3%A9/a%2Fb%20c?q=%C3%A9")
    assert env["PATH_INFO"] == "/environ/café/a/b c".encode().decode("latin-1")
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/environ/café/a/b c"
    assert env["RAW_URI"] == env["REQUEST_URI"] == "/app/environ/caf%C3%A9/a%2Fb%20c?q=%C3%A9"
    assert env["QUERY_STRING"] == "q=%C3%A9"


def test_path_outside_the_root_path_is_left_whole(endpoint):
    with endpoint.connect() as sock:
        sock.sendall(b"GET /other/environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status = ResponseReader(sock).next()[0]
    assert status == 404  # PATH_INFO is /other/environ, which the app does not route


def test_absolute_form_target(endpoint):
    env = get_environ(endpoint, "http://proxied.example:9000/app/environ?x=y")
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == ("/environ", "x=y")
    assert env["HTTP_HOST"] == "proxied.example:9000"
    assert env["SERVER_NAME"] == "proxied.example"
    assert env["RAW_URI"] == "http://proxied.example:9000/app/environ?x=y"


def test_headers_joined_and_underscores_dropped(endpoint):
    env = get_environ(endpoint, "/app/environ", "X-Multi: one", "Cookie: a=1", "x-multi: two",
                      "Cookie: b=2", "X_Forbidden: sneaky", "X-Empty:", "Accept: text/html")
    assert env["HTTP_X_MULTI"] == "one, two"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_EMPTY"] == ""
    assert env["HTTP_ACCEPT"] == "text/html"
    assert not any("FORBIDDEN" in key for key in env)


def test_content_type_and_length(endpoint):
    env = environ_of(endpoint, b"POST /app/environ HTTP/1.1\r\nHost: x\r\nContent-Type: text/x-test\r\n"
                               b"Content-Length: 3\r\n\r\nabc")
    assert (env["CONTENT_TYPE"], env["CONTENT_LENGTH"]) == ("text/x-test", "3")
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env


def test_http10_protocol_and_no_server_header(endpoint):
    with endpoint.connect() as sock:
        sock.sendall(b"GET /app/environ HTTP/1.0\r\n\r\n")
        raw = read_until_close(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert json.loads(body)["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert b"\r\nServer:" not in head and b"\r\nDate:" in head


def test_wsgi_errors_reach_the_error_log(endpoint, server):
    with endpoint.connect() as sock:
        sock.sendall(b"GET /app/errors HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ResponseReader(sock).next()[0] == 200
    server.wait_log(r"message to wsgi\.errors\nsecond line")


# -- WebTest, through a forwarding app ---------------------------------------------------------


def forwarding_app(endpoint):
    """A WSGI app that sends each request to the live server and relays its answer."""

    def app(environ, start_response):
        if endpoint.url.startswith("unix:"):
            conn = http.client.HTTPConnection("localhost", timeout=30)
            conn.sock = socket.socket(socket.AF_UNIX)
            conn.sock.settimeout(30)
            conn.sock.connect(endpoint.address)
        else:
            conn = http.client.HTTPConnection(*endpoint.address, timeout=30)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else None
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        path = quote(environ["SCRIPT_NAME"] + environ["PATH_INFO"])
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        conn.request(environ["REQUEST_METHOD"], path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        start_response(f"{resp.status} {resp.reason}",
                       [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP])
        return [data]

    return app


@pytest.fixture
def web(endpoint):
    return webtest.TestApp(forwarding_app(endpoint), extra_environ={"SCRIPT_NAME": "/app"})


def test_webtest_form_post(web):
    res = web.post("/form", {"name": "Zoë", "count": "3"})
    assert res.json["fields"] == {"name": "Zoë", "count": "3"}


def test_webtest_multipart_upload(web):
    res = web.post("/form", {"title": "report"},
                   upload_files=[("doc", "notes.txt", b"line one\nline two\n" * 500)])
    assert res.json["fields"]["title"] == "report"
    assert res.json["fields"]["doc"] == "notes.txt:" + "line one\nline two\n" * 500


def test_webtest_cookies_round_trip(web):
    first = web.post("/form", {"a": "1"})
    assert first.headers["Set-Cookie"].startswith("visit=1")
    web.set_cookie("extra", "yes")
    second = web.post("/form", {"a": "2"})
    assert second.json["cookies"] == {"visit": "1", "extra": "yes"}


def test_webtest_json_and_errors(web):
    assert web.post("/echo", b'{"k": [1, 2]}', content_type="application/json").body == b'{"k": [1, 2]}'
    assert web.get("/no-such-route", status=404).body == b"not found"
    assert web.get("/error", status=500).body == b"Internal Server Error\n"


def test_webtest_head(web):
    res = web.head("/headers")
    assert res.headers["Content-Length"] == "2" and res.body == b""


# -- the pieces, without sockets ---------------------------------------------------------------


def test_input_stream_reads_across_chunks():
    chunks = iter([b"ab\ncd", b"ef\n", b"", b"never"])
    stream = InputStream(lambda: next(chunks))
    assert stream.read(1) == b"a"
    assert stream.readline() == b"b\n"
    assert stream.readline(2) == b"cd"
    assert stream.readlines() == [b"ef\n"]
    assert stream.read() == b"" and stream.read(10) == b""


def test_input_stream_iteration_and_readinto():
    chunks = iter([b"x\ny", b"\nz", b""])
    stream = InputStream(lambda: next(chunks))
    buf = bytearray(1)
    assert stream.readinto(buf) == 1 and buf == b"x"
    assert list(stream) == [b"\n", b"y\n", b"z"]


def test_file_wrapper_iterates_when_sendfile_is_impossible():
    wrapper = FileWrapper(io.BytesIO(b"abcdefg"), 3)
    assert list(wrapper) == [b"abc", b"def", b"g"]
    assert wrapper.sendfile_span() is None


def test_file_wrapper_span_of_a_real_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    with open(path, "rb") as f:
        f.seek(4)
        fd, offset, length = FileWrapper(f).sendfile_span()
        assert (fd, offset, length) == (f.fileno(), 4, 6)


@pytest.mark.parametrize("target, expected", [
    (b"/p?q=1", (b"/p", b"q=1", b"")),
    (b"http://h:1/p?q", (b"/p", b"q", b"h:1")),
    (b"https://user@h?q", (b"/", b"q", b"h")),
    (b"*", (b"", b"", b"")),
])
def test_split_target(target, expected):
    assert split_target(target) == expected


@pytest.mark.parametrize("status, headers, message", [
    (b"200 OK", [], "status must be str"),
    ("200", [], "invalid status"),
    ("OK 200", [], "invalid status"),
    ("200 OK\r\nX: y", [], "invalid status"),
    ("200 OK", (("A", "b"),), "headers must be a list"),
    ("200 OK", [("A", "b", "c")], r"\(name, value\) tuple"),
    ("200 OK", [("A", 1)], "must be str"),
    ("200 OK", [("A B", "c")], "invalid header name"),
    ("200 OK", [("A", "b\nc")], "invalid character"),
    ("200 OK", [("A", "b\x00")], "invalid character"),
    ("200 OK", [("Keep-Alive", "5")], "hop-by-hop"),
    ("200 OK", [("Transfer-Encoding", "chunked")], "hop-by-hop"),
    ("200 OK", [("Content-Length", "5"), ("Content-Length", "5")], "invalid Content-Length"),
    ("200 OK", [("Content-Length", "²")], "invalid Content-Length"),
    ("200 OK", [("X", "snowman ☃")], "latin-1"),
])
def test_check_start_response_rejects(status, headers, message):
    with pytest.raises(rsp.ResponseHeadError, match=message):
        rsp.check_start_response(status, headers)


def test_check_start_response_accepts_and_notes():
    plan = rsp.check_start_response("200 OK", [("Content-Length", "12"), ("Connection", "close"),
                                               ("Date", "x"), ("X-Tab", "a\tb")])
    assert plan.content_length == 12 and plan.app_wants_close and plan.has_date
    assert ("Connection", "close") not in plan.headers
    assert rsp.check_start_response("204 No Content", [("Content-Length", "0")]).content_length is None


@pytest.mark.parametrize("views", [False, True], ids=["bytes", "memoryview"])
@pytest.mark.parametrize("seed", range(5))
def test_input_stream_any_mix_of_reads_returns_the_body_once(seed, views):
    """Random reads of random sizes over randomly split chunks give back exactly the body, as bytes,
    whether the chunks are bytes or views of the received bytes (a large body with its head)."""
    import random

    rng = random.Random(seed)
    for _ in range(300):
        body = b"".join(rng.choice([b"a", b"bb", b"\n", b"ccc\n", b"x" * 50]) for _ in range(rng.randint(0, 300)))
        cuts = sorted(rng.sample(range(1, len(body)), min(len(body) - 1, rng.randint(0, 20)))) if body else []
        source = memoryview(body) if views else body
        pieces = iter([source[a:b] for a, b in zip([0] + cuts, cuts + [len(body)])] if body else [])
        stream = InputStream(lambda pieces=pieces: next(pieces, b""))
        out = []
        while True:
            op = rng.choice(["read", "readline", "readline-limit", "readinto", "rest"])
            if op == "read":
                n = rng.randint(0, 200)
                data = stream.read(n)
                assert len(data) == n or stream.read(1) == b""
            elif op == "readline":
                data = stream.readline()
                assert b"\n" not in data[:-1]
            elif op == "readline-limit":
                n = rng.randint(1, 30)
                data = stream.readline(n)
                assert len(data) <= n and b"\n" not in data[:-1]
            elif op == "readinto":
                buf = bytearray(rng.randint(1, 40))
                data = bytes(buf[:stream.readinto(buf)])
            else:
                data = stream.read()
            assert type(data) is bytes, op
            out.append(data)
            if op == "rest" or (op == "readline" and not data):
                break
        assert b"".join(out) == body


@pytest.mark.parametrize("status, headers, method, version, mode", [
    ("200 OK", [("Content-Length", "3")], "GET", "1.1", rsp.LENGTH),
    ("200 OK", [], "GET", "1.1", rsp.CHUNKED),
    ("200 OK", [], "GET", "1.0", rsp.CLOSE),
    ("200 OK", [("Content-Length", "3")], "HEAD", "1.1", rsp.NO_BODY),
    ("103 Early Hints", [], "GET", "1.1", rsp.NO_BODY),
    ("204 No Content", [], "GET", "1.1", rsp.NO_BODY),
    ("304 Not Modified", [("Content-Length", "9")], "GET", "1.0", rsp.NO_BODY),
])
def test_body_mode(status, headers, method, version, mode):
    assert rsp.body_mode(rsp.check_start_response(status, headers), method, version) == mode


def test_render_head_connection_header():
    plan = rsp.check_start_response("200 OK", [("Content-Length", "0")])
    assert b"Connection" not in rsp.render_head(plan, rsp.LENGTH, True, "s")
    assert b"\r\nConnection: close\r\n\r\n" in rsp.render_head(plan, rsp.LENGTH, False, "s")
    assert b"\r\nConnection: close\r\n\r\n" in rsp.render_head(plan, rsp.CLOSE, True, "s")
    assert b"\r\nConnection: keep-alive\r\n\r\n" in rsp.render_head(plan, rsp.LENGTH, True, "s", http10=True)
    assert b"Server" not in rsp.render_head(plan, rsp.LENGTH, True, "")
