"""HTTP/1.1 framing on a live server, over TCP and a unix socket.

Keep-alive, pipelining, request bodies (Content-Length and chunked, read,
partly read or ignored), 100-continue, and how responses are delimited.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket

import pytest

from conftest import ResponseReader, module_server, read_until_close, wait_for

H = b"Host: test\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = module_server(tmp_path_factory, ["--workers", "1", "--threads", "4", "--keepalive", "30",
                                           "http_apps:raw_app"])
    yield srv
    srv.kill()
    assert "AssertionError" not in srv.log(), "an app failed wsgiref.validate"


@pytest.fixture
def conn(endpoint):
    sock = endpoint.connect()
    yield sock, ResponseReader(sock)
    sock.close()


def get(path: str, *headers: bytes, method: bytes = b"GET", version: bytes = b"1.1") -> bytes:
    return method + b" " + path.encode() + b" HTTP/" + version + b"\r\n" + H + b"".join(
        h + b"\r\n" for h in headers) + b"\r\n"


def post(path: str, body: bytes, *headers: bytes) -> bytes:
    return (b"POST " + path.encode() + b" HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n" % len(body)
            + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body)


def chunked(path: str, pieces: list[bytes], trailers: bytes = b"") -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n" + trailers + b"\r\n"
    return b"POST " + path.encode() + b" HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + body


# -- keep-alive -----------------------------------------------------------------------------


def test_http11_keeps_the_connection_open(conn):
    sock, reader = conn
    for i in range(3):
        sock.sendall(get(f"/read-some?n={i}"))
        status, headers, _ = reader.next()
        assert status == 200
        assert "connection" not in headers
    sock.sendall(get("/echo", b"Connection: close"))
    status, headers, _ = reader.next()
    assert headers["connection"] == "close"
    assert reader.closed()


def test_http10_keeps_alive_only_when_asked(conn, endpoint):
    sock, reader = conn
    for _ in range(2):
        sock.sendall(get("/echo", b"Connection: keep-alive", version=b"1.0"))
        status, headers, body = reader.next()
        assert (status, headers["connection"], headers["content-length"]) == (200, "keep-alive", "0")
    raw = read_until_close_after(endpoint, get("/echo", version=b"1.0"))
    assert b"Connection: close\r\n" in raw


def read_until_close_after(endpoint, data: bytes) -> bytes:
    with endpoint.connect() as sock:
        sock.sendall(data)
        return read_until_close(sock)


def test_pipelined_requests_are_answered_in_order(conn):
    sock, reader = conn
    sock.sendall(get("/read-some?n=1") + post("/echo", b"second") + chunked("/echo", [b"thi", b"rd"])
                 + get("/headers", method=b"HEAD") + post("/noread", b"ignored body") + get("/stream"))
    bodies = [reader.next(head=(i == 3))[2] for i in range(6)]
    assert bodies == [b"", b"second", b"third", b"", b"ignored", b"part0;part1;part2;"]


def test_a_request_after_an_invalid_one_is_never_served(conn, server):
    sock, reader = conn
    sock.sendall(get("/read-some?n=1") + b"GET /bad path HTTP/1.1\r\n" + H + b"\r\n"
                 + get("/closing?name=after-invalid"))
    assert reader.next()[0] == 200
    status, headers, _ = reader.next()
    assert (status, headers["connection"]) == (400, "close")
    assert reader.closed()
    assert "closed after-invalid" not in server.log()


# -- request bodies -----------------------------------------------------------------------------


def test_chunked_request_body_with_trailers(conn):
    sock, reader = conn
    sock.sendall(chunked("/echo?size=3", [b"hello ", b"chunked", b" world"], b"X-Trailer: ignored\r\n"))
    assert reader.next()[2] == b"hello chunked world"
    sock.sendall(get("/environ"))
    assert "HTTP_X_TRAILER" not in json.loads(reader.next()[2])


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_large_body_is_streamed_to_the_app(conn, framing):
    sock, reader = conn
    body = os.urandom(3 << 20)
    if framing == "length":
        sock.sendall(post("/digest", body))
    else:
        sock.sendall(chunked("/digest", [body[i:i + 100_000] for i in range(0, len(body), 100_000)]))
    data = json.loads(reader.next()[2])
    assert data == {"len": len(body), "sha": hashlib.sha256(body).hexdigest()}


def peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def test_body_memory_is_bounded(server):
    """A 200 MB upload read in pieces must not raise the worker's peak memory by anything like it."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc")
    worker = server.booted_pids()[-1]
    before = peak_rss_kb(worker)
    block = b"m" * (1 << 20)
    with server.connect() as sock:
        sock.sendall(b"POST /digest HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % (200 << 20))
        for _ in range(200):
            sock.sendall(block)
        status, _, body = ResponseReader(sock).next()
    assert json.loads(body)["len"] == 200 << 20
    assert peak_rss_kb(worker) - before < 50_000


@pytest.mark.parametrize("how", ["readline", "readlines", "iter"])
def test_wsgi_input_lines(conn, how):
    sock, reader = conn
    sock.sendall(chunked(f"/echo-lines?how={how}", [b"one\ntw", b"o\n", b"\nthree\nno newline"]))
    assert json.loads(reader.next()[2]) == ["one\n", "two\n", "\n", "three\n", "no newline"]


@pytest.mark.parametrize("size", [10, 200_000])
def test_small_unread_body_is_drained_and_the_connection_kept(conn, size):
    sock, reader = conn
    sock.sendall(post("/noread", b"x" * size) + get("/read-some"))
    status, headers, body = reader.next()
    assert (status, body) == (200, b"ignored")
    assert "connection" not in headers
    assert reader.next()[0] == 200


def test_large_unread_body_closes_after_the_response(conn):
    sock, reader = conn
    sock.sendall(b"POST /noread HTTP/1.1\r\n" + H + b"Content-Length: 50000000\r\n\r\n" + b"x" * 100_000)
    status, headers, body = reader.next()
    assert (status, headers["connection"], body) == (200, "close", b"ignored")
    assert reader.closed()


def test_large_response_survives_closing_on_an_unread_body(conn):
    """Closing with unread input resets the connection and can drop the response's tail:
    the server must stop sending first, then let the rest of the input arrive."""
    sock, reader = conn
    sock.sendall(b"POST /noread-big HTTP/1.1\r\n" + H + b"Content-Length: 50000000\r\n\r\n" + b"x" * 200_000)
    status, headers, body = reader.next()
    assert (status, headers["connection"], len(body)) == (200, "close", 8 << 20)
    assert reader.closed()


def test_partly_read_chunked_body_closes(conn):
    sock, reader = conn
    head = b"POST /read-some?n=3 HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    sock.sendall(head + b"%x\r\n" % 100_000 + b"y" * 100_000 + b"\r\n")  # no last chunk yet
    status, headers, body = reader.next()
    assert (status, headers["connection"], body) == (200, "close", b"yyy")
    assert reader.closed()


# -- 100-continue -------------------------------------------------------------------------------


def test_100_continue_is_sent_when_the_app_reads(conn):
    sock, reader = conn
    sock.sendall(b"POST /echo HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 4\r\n\r\n")
    status, _, _ = reader.next()
    assert status == 100  # before any body byte was sent
    sock.sendall(b"body")
    status, headers, body = reader.next()
    assert (status, body) == (200, b"body")
    assert "connection" not in headers
    sock.sendall(get("/read-some"))
    assert reader.next()[0] == 200


def test_no_100_continue_when_the_app_answers_without_reading(conn):
    sock, reader = conn
    sock.sendall(b"POST /noread HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 4\r\n\r\n")
    status, headers, body = reader.next()
    assert (status, headers["connection"], body) == (200, "close", b"ignored")
    assert reader.closed()


def test_100_continue_client_that_sends_anyway_still_gets_the_response(conn):
    sock, reader = conn
    sock.sendall(b"POST /noread HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 300000\r\n\r\n")
    try:
        sock.sendall(b"z" * 300_000)
    except OSError:
        pass  # the server may already have closed its side
    status, headers, body = reader.next()
    assert (status, headers["connection"], body) == (200, "close", b"ignored")


# -- responses ----------------------------------------------------------------------------------


def test_response_without_length_is_chunked_for_http11(conn):
    sock, reader = conn
    sock.sendall(get("/stream?n=4"))
    status, headers, body = reader.next()
    assert headers["transfer-encoding"] == "chunked"
    assert "content-length" not in headers
    assert body == b"part0;part1;part2;part3;"
    sock.sendall(get("/write"))
    assert reader.next()[2] == b"written;returned"


def test_response_without_length_is_close_delimited_for_http10(endpoint):
    raw = read_until_close_after(endpoint, get("/stream?n=2", b"Connection: keep-alive", version=b"1.0"))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Connection: close" in head and b"Transfer-Encoding" not in head
    assert body == b"part0;part1;"


def test_head_has_no_body_and_keeps_the_connection(conn):
    sock, reader = conn
    for path in ("/headers", "/stream", "/echo", "/file?path=" + __file__):
        sock.sendall(get(path, method=b"HEAD"))
        status, headers, _ = reader.next(head=True)
        assert status == 200
    sock.sendall(get("/headers"))
    status, headers, body = reader.next()
    assert (headers["content-length"], body) == ("2", b"ok")


def test_head_keeps_the_length_the_get_would_have(conn):
    sock, reader = conn
    sock.sendall(get("/file?path=" + __file__, method=b"HEAD"))
    _, headers, _ = reader.next(head=True)
    assert int(headers["content-length"]) == os.path.getsize(__file__)


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(conn, code):
    sock, reader = conn
    sock.sendall(get(f"/status?code={code}") + get("/read-some?n=0"))
    status, headers, _ = reader.next()
    assert status == code
    assert "transfer-encoding" not in headers
    if code == 204:
        assert "content-length" not in headers
    assert reader.next()[0] == 200  # no stray body bytes before the next response


def test_date_server_and_repeated_headers(conn):
    sock, reader = conn
    sock.sendall(get("/headers"))
    raw = b""
    while b"\r\n\r\nok" not in raw:
        raw += sock.recv(4096)
    head = raw.split(b"\r\n\r\n")[0].decode() + "\r\n"
    assert "\r\nServer: sharedsock\r\n" in head
    assert "\r\nDate: " in head and head.count("GMT") == 1
    assert "\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n" in head


def test_app_asking_to_close_gets_connection_close(conn):
    sock, reader = conn
    sock.sendall(get("/app-close"))
    status, headers, body = reader.next()
    assert (headers["connection"], body) == ("close", b"ok")
    assert reader.closed()


def test_more_than_content_length_is_cut_off_and_logged(conn, server):
    sock, reader = conn
    sock.sendall(get("/too-long"))
    status, headers, body = reader.next()
    assert (status, body) == (200, b"12345")
    assert reader.closed()
    server.wait_log(r"app sent more than its Content-Length \(5\); response cut off")
    server.wait_log(r"closed too-long")


def test_overrun_in_the_first_write_says_connection_close(conn):
    sock, reader = conn
    sock.sendall(get("/too-long-at-once"))
    status, headers, body = reader.next()
    assert (headers["connection"], body) == ("close", b"12345")
    assert reader.closed()


def test_less_than_content_length_closes_the_connection(conn, server):
    sock, reader = conn
    sock.sendall(get("/too-short"))
    raw = read_until_close(sock)
    assert raw.endswith(b"\r\n\r\n12345")
    server.wait_log(r"app sent 5 of its Content-Length 10 bytes")
    server.wait_log(r"closed too-short")


# -- file wrapper -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("files") / "data.bin"
    path.write_bytes(os.urandom(300_000))
    return path


@pytest.mark.parametrize("query, expected", [
    ("", slice(None)),
    ("&offset=1000", slice(1000, None)),
    ("&offset=10&length=100", slice(10, 110)),
])
def test_file_wrapper_sends_real_files(conn, data_file, query, expected):
    sock, reader = conn
    sock.sendall(get(f"/file?path={data_file}{query}"))
    status, headers, body = reader.next()
    assert body == data_file.read_bytes()[expected]
    assert headers["content-length"] == str(len(body))
    sock.sendall(get("/filelike"))
    assert reader.next()[2] == b"from a file-like object"


# -- the app's iterable is always closed ------------------------------------------------------


def test_client_disconnect_mid_response_closes_the_iterable(endpoint, server):
    before = server.log().count("closed big")
    with endpoint.connect() as sock:
        sock.sendall(get("/big?mb=64"))
        assert sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    wait_for(lambda: server.log().count("closed big") > before, message="close() of the iterable")
    with endpoint.connect() as sock:
        sock.sendall(get("/read-some", b"Connection: close"))
        assert read_until_close(sock).startswith(b"HTTP/1.1 200 ")
    assert "Traceback" not in server.log().split("closed big")[-1]
