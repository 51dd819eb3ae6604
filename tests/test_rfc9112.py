"""RFC 9112 / RFC 9110 request rules a server MUST keep, each with its section.

Every sample goes through the sans-I/O parser fed whole, line by line, byte
by byte and in random pieces (``test_parser.FEEDS``), then through a live
server over TCP and a unix socket, where the exact status, ``Connection:
close`` and the closed connection are checked, and nothing pipelined behind
a refused request may reach the app.
"""

from __future__ import annotations

import json

import pytest
from test_parser import FEEDS, post, req, run

from conftest import ResponseReader, module_server, read_until_close
from sharedsock.http import parser as http_parser
from sharedsock.http.parser import DATA, ERROR, HEAD, Limits, RequestParser

H = b"Host: example\r\n"
CHUNKED_HEAD = b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"


def te(value: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: " + value + b"\r\n\r\n"


# (name, raw, expected requests): valid, so they must be served.
SERVED = [
    # RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ); RFC 9110 5.6.3:
    # BWS MUST be parsed and removed.
    ("chunk ext: space after ';'", CHUNKED_HEAD + b"5; name=value\r\nhello\r\n0\r\n\r\n"),
    ("chunk ext: space before ';'", CHUNKED_HEAD + b"5 ;a\r\nhello\r\n0\r\n\r\n"),
    ("chunk ext: tabs around ';' and '='", CHUNKED_HEAD + b"5\t;\ta\t=\tb\r\nhello\r\n0\r\n\r\n"),
    ("chunk ext: spaces around '=' and a quoted value",
     CHUNKED_HEAD + b"5 ; a = \"x \\\" y\" ; b\r\nhello\r\n0\r\n\r\n"),
    ("chunk ext on the last chunk, with BWS", CHUNKED_HEAD + b"5\r\nhello\r\n0 ; last\r\n\r\n"),
    ("chunk size with leading zeros", CHUNKED_HEAD + b"00000000000000000005\r\nhello\r\n0\r\n\r\n"),
    # RFC 9110 5.6.1.2: empty list elements are ignored.
    ("Transfer-Encoding 'chunked,'", te(b"chunked,") + b"5\r\nhello\r\n0\r\n\r\n"),
    ("Transfer-Encoding ', chunked'", te(b", chunked") + b"5\r\nhello\r\n0\r\n\r\n"),
    ("Transfer-Encoding ' , chunked , ,'", te(b" , chunked , ,") + b"5\r\nhello\r\n0\r\n\r\n"),
]
SERVED_EXPECTED = {
    name: [post(b"hello", (b"Transfer-Encoding", raw.split(b"Transfer-Encoding:")[1].split(b"\r\n")[0].strip()),
                chunked=True)]
    for name, raw in SERVED
}

VALID_HEADS = [
    # RFC 9112 3.2 with RFC 3986 3.2.2: uri-host [ ":" port ].
    ("Host with a port", b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", b"example.com:8080"),
    ("Host IPv4", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"127.0.0.1"),
    ("Host IPv6 literal", b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", b"[::1]:80"),
    ("Host IPvFuture", b"GET / HTTP/1.1\r\nHost: [v1.fe80::a+en1]\r\n\r\n", b"[v1.fe80::a+en1]"),
    ("Host pct-encoded", b"GET / HTTP/1.1\r\nHost: a%2Db.example\r\n\r\n", b"a%2Db.example"),
    ("Host empty (RFC 9112 3.2 allows it)", b"GET / HTTP/1.1\r\nHost:\r\n\r\n", b""),
    ("Host with an empty port", b"GET / HTTP/1.1\r\nHost: example:\r\n\r\n", b"example:"),
    # RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request line.
    ("one CRLF before the request line", b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", b"x"),
]

# (name, raw, status): a server MUST refuse these.
REFUSED = [
    # RFC 9112 3.2: the request-target is origin-form, absolute-form, authority-form (CONNECT)
    # or asterisk-form (OPTIONS); anything else is an invalid request-line.
    ("target with ']' as its authority", b"PUT s://]ufd/: HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-form with userinfo", b"GET http://user@example/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-form with two ports", b"GET http://a:1:2/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-form with a bad port", b"GET http://a:8x/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-form with an empty host", b"GET http:///x HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("absolute-form unclosed IPv6", b"GET http://[::1/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    # RFC 9112 3.2: a Host field with an invalid value gets 400.
    ("Host with a space", b"GET / HTTP/1.1\r\nHost: a b.test\r\n\r\n", 400),
    ("Host with userinfo", b"GET / HTTP/1.1\r\nHost: user@example.com\r\n\r\n", 400),
    ("Host with two colons", b"GET / HTTP/1.1\r\nHost: a:b:c\r\n\r\n", 400),
    ("Host with a path", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("Host with a bad pct-encoding", b"GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", 400),
    ("Host with an invalid IPv6", b"GET / HTTP/1.1\r\nHost: [zz::1]\r\n\r\n", 400),
    ("Host IPv6 with a zone", b"GET / HTTP/1.1\r\nHost: [fe80::1%eth0]\r\n\r\n", 400),
    ("Host with junk after the literal", b"GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 400),
    ("Host with a bad port", b"GET / HTTP/1.1\r\nHost: example:80a\r\n\r\n", 400),
    ("absolute-form does not excuse a bad Host",
     b"GET http://example/ HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    # RFC 9112 3: request-line = method SP request-target SP HTTP-version CRLF.
    ("HTTP/0.9 request line and headers", b"GET /\r\n" + H + b"\r\n", 400),
    ("two spaces after the method", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("two spaces before the version", b"GET /  HTTP/1.1\r\n" + H + b"\r\n", 400),
    # RFC 9112 6.3: Transfer-Encoding without chunked last: 400, then close.
    ("Transfer-Encoding gzip only", te(b"gzip"), 400),
    ("Transfer-Encoding of empty elements only", te(b" , ,"), 400),
    ("chunked twice in one list", te(b"chunked, chunked") + b"0\r\n\r\n", 400),
    # RFC 9112 6.1: an unknown coding before chunked SHOULD get 501.
    ("unknown coding before chunked", te(b"gzip, chunked") + b"0\r\n\r\n", 501),
    # RFC 9110 10.1.1: an expectation other than 100-continue MAY get 417.
    ("Expect list with an unknown member",
     b"POST / HTTP/1.1\r\n" + H + b"Expect: 100-continue, x\r\nContent-Length: 1\r\n\r\nx", 417),
    # Smuggling safety of our own chunked decoder (RFC 9112 7.1, 2.2).
    ("chunk ext: BWS but no name", CHUNKED_HEAD + b"5 ;\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext: '=' but no value", CHUNKED_HEAD + b"5;a=\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext: space inside a name", CHUNKED_HEAD + b"5;a b\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext: unterminated quote", CHUNKED_HEAD + b"5;a=\"b\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext: bare CR", CHUNKED_HEAD + b"5;a\rb\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk ext with BWS ended by bare LF", CHUNKED_HEAD + b"5 ;a\nhello\r\n0\r\n\r\n", 400),
    ("chunk size with a tab and no ext", CHUNKED_HEAD + b"5\t\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size with an underscore", CHUNKED_HEAD + b"1_0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n", 400),
    ("chunk data ended by CR only", CHUNKED_HEAD + b"5\r\nhello\rX0\r\n\r\n", 400),
    ("trailer with obs-fold", CHUNKED_HEAD + b"0\r\nX-A: 1\r\n  2\r\n\r\n", 400),
    ("trailer with a NUL", CHUNKED_HEAD + b"0\r\nX-A: 1\x002\r\n\r\n", 400),
    ("Transfer-Encoding in the trailers", CHUNKED_HEAD + b"0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    # RFC 9112 7.1: a chunk larger than the body limit is refused as soon as its size is read.
    ("chunk size over the body limit", CHUNKED_HEAD + b"10000000000\r\n", 413),
    ("chunk sizes adding up over the limit",
     CHUNKED_HEAD + b"a\r\n" + b"x" * 10 + b"\r\n3ffffff7\r\n", 413),
]

# Requests a server must refuse with no more input: the bytes end where the error is.
REFUSED_AT_ONCE = [
    ("HTTP/0.9 request line", b"GET /\r\n", 400),
    ("HTTP/0.9 after a good request", b"GET /read-some?n=0 HTTP/1.1\r\n" + H + b"\r\nGET /b\r\n", 400),
    ("chunk size over the body limit", CHUNKED_HEAD + b"10000000000\r\n", 413),
]


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("name, raw", SERVED, ids=[s[0] for s in SERVED])
def test_valid_framing_is_served(name, raw, feed):
    requests, error, _ = run(RequestParser(), FEEDS[feed](raw))
    assert error is None
    assert requests == SERVED_EXPECTED[name]


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("name, raw, host", VALID_HEADS, ids=[v[0] for v in VALID_HEADS])
def test_valid_heads_are_served(name, raw, host, feed):
    requests, error, _ = run(RequestParser(), FEEDS[feed](raw))
    assert error is None
    assert requests == [req(headers=[(b"Host", host)])]


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("name, raw, status", REFUSED, ids=[r[0] for r in REFUSED])
def test_invalid_requests_are_refused(name, raw, status, feed):
    good = b"GET /first HTTP/1.1\r\n" + H + b"\r\n"
    after = b"GET /after HTTP/1.1\r\n" + H + b"\r\n"
    parser = RequestParser()
    requests, error, _ = run(parser, FEEDS[feed](good + raw + after))
    assert error == status
    assert [r["target"] for r in requests] == [b"/first"]
    assert parser.feed(after) == []


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("name, raw, status", REFUSED_AT_ONCE, ids=[r[0] for r in REFUSED_AT_ONCE])
def test_refused_without_waiting_for_more_input(name, raw, status, feed):
    _, error, kinds = run(RequestParser(), FEEDS[feed](raw))
    assert error == status
    assert kinds[-1] == ERROR


def test_oversized_chunk_is_refused_before_its_data():
    parser = RequestParser(Limits(request_body=1000))
    assert [k for k, _ in parser.feed(CHUNKED_HEAD)] == [HEAD]
    events = parser.feed(b"3e9\r\n")  # 1001
    assert [k for k, _ in events] == [ERROR] and events[0][1].status == 413


def test_huge_chunk_size_without_a_body_limit_is_refused():
    """RFC 9112 7.1: sizes past 64 bits are refused, never wrapped around, even when unlimited."""
    parser = RequestParser(Limits(request_body=0))
    events = parser.feed(CHUNKED_HEAD + b"1" + b"0" * 16 + b"\r\n")
    assert [(k, getattr(p, "status", None)) for k, p in events] == [(HEAD, None), (ERROR, 400)]
    big = RequestParser(Limits(request_body=0))
    events = big.feed(CHUNKED_HEAD + b"f" * 16 + b"\r\nabc")
    assert [k for k, _ in events] == [HEAD, DATA]


def test_chunked_request_is_followed_by_a_pipelined_one():
    """Our chunked decoder hands the stream back to llhttp at the exact end of the body."""
    raw = (CHUNKED_HEAD + b"5 ; a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"
           + b"POST /2 HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nhi" + b"GET /3 HTTP/1.1\r\n" + H + b"\r\n")
    for feed in FEEDS:
        requests, error, _ = run(RequestParser(), FEEDS[feed](raw))
        assert error is None, feed
        assert [(r["target"], r["body"]) for r in requests] == [(b"/", b"hello"), (b"/2", b"hi"), (b"/3", b"")]


@pytest.mark.parametrize("raw", [
    b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\nGET /next HTTP/1.1\r\n" + H + b"\r\n",
    b"GET / HTTP/1.0\r\n\r\nGET /next HTTP/1.0\r\n\r\n",
    b"POST / HTTP/1.1\r\n" + H + b"Connection: close\r\nContent-Length: 2\r\n\r\nhiGET /next HTTP/1.1\r\n" + H
    + b"\r\n",
])
def test_nothing_is_parsed_after_a_request_that_closes(raw):
    """RFC 9112 9.6: after a "close" request the server MUST NOT process further requests."""
    for feed in FEEDS:
        requests, error, _ = run(RequestParser(), FEEDS[feed](raw))
        assert [r["target"] for r in requests] == [b"/"], feed
        assert error == 400


def test_trailing_crlf_after_a_body_is_ignored():
    """RFC 9112 2.2: extra CRLF after a body (old clients send it) is not a new request."""
    raw = b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nhi\r\nGET /2 HTTP/1.1\r\n" + H + b"\r\n"
    for feed in FEEDS:
        requests, error, _ = run(RequestParser(), FEEDS[feed](raw))
        assert error is None and [r["target"] for r in requests] == [b"/", b"/2"], feed


@pytest.mark.parametrize("value, ok", [
    (b"example.com", True), (b"EXAMPLE.com:443", True), (b"[2001:db8::1]:8080", True), (b"", True),
    (b"a b", False), (b"u@h", False), (b"h:p", False), (b"[::1", False), (b"[::1]]", False),
    (b"h:1:2", False), (b"h\x00", False), (b"%", False), (b"%4", False), (b"[]", False), (b"[v1.]", False),
])
def test_valid_host(value, ok):
    assert http_parser.valid_host(value) is ok
    assert http_parser.valid_host(value) is ok  # the second answer comes from the cache


# -- a live server ----------------------------------------------------------------------------

LIVE_H = b"Host: test\r\n"
LIVE_CHUNKED = b"POST /echo HTTP/1.1\r\n" + LIVE_H + b"Transfer-Encoding: chunked\r\n\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    access = tmp_path_factory.mktemp("access") / "access.log"
    # Long timeouts: a refusal that waited for one would fail the test on the client's deadline.
    srv = module_server(tmp_path_factory, ["--workers", "1", "--threads", "2", "--limit-request-body", "1000",
                                           "--header-timeout", "300", "--body-timeout", "300",
                                           "--access-log", str(access), "http_apps:raw_app"])
    srv.access_path = access
    yield srv
    srv.kill()


def live(raw: bytes) -> bytes:
    """A sample rewritten for the live app: Host 'test', and bodies posted to /echo."""
    return raw.replace(b"Host: example\r\n", LIVE_H).replace(b"POST / HTTP", b"POST /echo HTTP")


def refused(endpoint, server, data: bytes, status: int, follow: bool = True) -> None:
    """``data`` gets exactly one response, ``status`` with Connection: close; then the server closes."""
    smuggled = b"GET /closing?name=smuggled HTTP/1.1\r\n" + LIVE_H + b"\r\n" if follow else b""
    with endpoint.connect() as sock:
        try:
            sock.sendall(data + smuggled)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reader = ResponseReader(sock)
        got, headers, body = reader.next()
        raw_rest = reader.buffer
        assert reader.closed(), raw_rest[:200]
    assert (got, headers["connection"]) == (status, "close"), body
    assert body.startswith(b"%d " % status)
    assert "smuggled" not in server.access_path.read_text()


@pytest.mark.parametrize("name, raw", SERVED, ids=[s[0] for s in SERVED])
def test_live_valid_framing_is_served(endpoint, name, raw):
    with endpoint.connect() as sock:
        sock.sendall(live(raw) + b"GET /read-some?n=0 HTTP/1.1\r\n" + LIVE_H + b"Connection: close\r\n\r\n")
        reader = ResponseReader(sock)
        assert reader.next()[::2] == (200, b"hello")
        status, headers, _ = reader.next()
        assert (status, headers["connection"]) == (200, "close")
        assert reader.closed()


@pytest.mark.parametrize("name, raw, host", VALID_HEADS, ids=[v[0] for v in VALID_HEADS])
def test_live_valid_hosts_are_served(endpoint, name, raw, host):
    data = raw.replace(b"GET / HTTP/1.1\r\n", b"GET /environ HTTP/1.1\r\nConnection: close\r\n")
    with endpoint.connect() as sock:
        sock.sendall(data)
        status, _, body = ResponseReader(sock).next()
    assert status == 200
    assert json.loads(body).get("HTTP_HOST", "") == host.decode()


def test_live_absolute_form_overrides_host(endpoint):
    """RFC 9112 3.2.2: the target's authority wins; the Host field is ignored (but still checked)."""
    with endpoint.connect() as sock:
        sock.sendall(b"GET http://other.example:8080/environ?q=1 HTTP/1.1\r\n" + LIVE_H + b"Connection: close\r\n\r\n")
        status, _, body = ResponseReader(sock).next()
    environ = json.loads(body)
    assert (status, environ["HTTP_HOST"], environ["SERVER_NAME"]) == (200, "other.example:8080", "other.example")
    assert (environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/environ", "q=1")


@pytest.mark.parametrize("name, raw, status", REFUSED, ids=[r[0] for r in REFUSED])
def test_live_invalid_requests_are_refused(endpoint, server, name, raw, status):
    refused(endpoint, server, live(raw), status)


@pytest.mark.parametrize("name, raw, status", REFUSED_AT_ONCE, ids=[r[0] for r in REFUSED_AT_ONCE])
def test_live_refused_without_waiting(endpoint, server, name, raw, status):
    data = live(raw)
    if data.startswith(b"GET /read-some"):
        with endpoint.connect() as sock:
            sock.sendall(data)
            reader = ResponseReader(sock)
            assert reader.next()[0] == 200
            got, headers, _ = reader.next()
            assert (got, headers["connection"]) == (status, "close")
            assert reader.closed()
        return
    refused(endpoint, server, data, status, follow=False)


def test_live_http09_gets_an_http11_status_line(endpoint):
    with endpoint.connect() as sock:
        sock.sendall(b"GET /\r\n")
        raw = read_until_close(sock)
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_live_oversized_chunk_is_413_before_any_data(endpoint, server):
    with endpoint.connect() as sock:
        sock.sendall(LIVE_CHUNKED.replace(b"/echo", b"/digest") + b"10000000000\r\n")
        reader = ResponseReader(sock)
        status, headers, _ = reader.next()
        assert (status, headers["connection"]) == (413, "close")
        assert reader.closed()


@pytest.mark.parametrize("framing", [b"Content-Length: 2\r\n\r\nhi", b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"])
def test_ignored_upgrade_keeps_its_body(framing):
    """RFC 9110 7.8: a server that ignores Upgrade reads the body as usual (llhttp would skip it)."""
    raw = b"POST / HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n" + framing
    for feed in FEEDS:
        requests, error, _ = run(RequestParser(), FEEDS[feed](raw + b"GET /next HTTP/1.1\r\n" + H + b"\r\n"))
        assert error is None, feed
        assert [(r["body"], r["keep_alive"]) for r in requests] == [(b"hi", False)], feed
