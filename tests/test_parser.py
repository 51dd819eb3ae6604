"""The sans-I/O request parser against a corpus of raw requests.

Every sample is fed whole, line by line, byte by byte and in random pieces;
the requests it yields (and the error that ends the stream, if any) must be
the same every way. Invalid samples must be refused, never guessed at.
"""

from __future__ import annotations

import random

import pytest

from sharedsock.errors import ProtocolError
from sharedsock.http.parser import DATA, END, ERROR, HEAD, Limits, RequestParser

H = b"Host: example\r\n"


def req(method="GET", target=b"/", version="1.1", headers=((b"Host", b"example"),), body=b"",
        keep_alive=True, chunked=False, content_length=None, expect_continue=False):
    return {"method": method, "target": target, "version": version, "headers": list(headers),
            "body": body, "keep_alive": keep_alive, "chunked": chunked,
            "content_length": content_length, "expect_continue": expect_continue}


def post(body, *extra, chunked=False, content_length=None, **kw):
    headers = [(b"Host", b"example")] + list(extra)
    return req("POST", headers=headers, body=body, chunked=chunked, content_length=content_length, **kw)


VALID = [
    ("simple get", b"GET / HTTP/1.1\r\n" + H + b"\r\n", [req()]),
    ("http/1.0 closes by default", b"GET /x HTTP/1.0\r\n\r\n",
     [req(target=b"/x", version="1.0", headers=(), keep_alive=False)]),
    ("http/1.0 keep-alive", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
     [req(version="1.0", headers=[(b"Connection", b"keep-alive")])]),
    ("http/1.1 close", b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
     [req(headers=[(b"Host", b"example"), (b"Connection", b"close")], keep_alive=False)]),
    ("query and percent-encoding kept raw", b"GET /a%20b/%C3%A9?x=1&y=%2F HTTP/1.1\r\n" + H + b"\r\n",
     [req(target=b"/a%20b/%C3%A9?x=1&y=%2F")]),
    ("absolute form", b"GET http://other.example:8080/p?q HTTP/1.1\r\n" + H + b"\r\n",
     [req(target=b"http://other.example:8080/p?q")]),
    ("asterisk form for OPTIONS", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", [req("OPTIONS", b"*")]),
    ("header case and order kept, value whitespace trimmed",
     b"GET / HTTP/1.1\r\nhOsT: example\r\nX-A:  spaced \t\r\nx-a: again\r\n\r\n",
     [req(headers=[(b"hOsT", b"example"), (b"X-A", b"spaced"), (b"x-a", b"again")])]),
    ("obs-text in a value", b"GET / HTTP/1.1\r\n" + H + b"X-Name: caf\xe9\r\n\r\n",
     [req(headers=[(b"Host", b"example"), (b"X-Name", b"caf\xe9")])]),
    ("empty value", b"GET / HTTP/1.1\r\n" + H + b"X-Empty:\r\n\r\n",
     [req(headers=[(b"Host", b"example"), (b"X-Empty", b"")])]),
    ("content-length body", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello",
     [post(b"hello", (b"Content-Length", b"5"), content_length=5)]),
    ("content-length zero", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n",
     [post(b"", (b"Content-Length", b"0"), content_length=0)]),
    ("chunked body",
     b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n",
     [post(b"hello!", (b"Transfer-Encoding", b"chunked"), chunked=True)]),
    ("chunked, mixed-case coding and hex sizes",
     b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n",
     [post(b"0123456789abcdefghij", (b"Transfer-Encoding", b"Chunked"), chunked=True)]),
    ("chunk extensions are allowed and ignored",
     b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3;name=value;q=\"a b\"\r\nabc\r\n0;last\r\n\r\n",
     [post(b"abc", (b"Transfer-Encoding", b"chunked"), chunked=True)]),
    ("trailers are consumed and never shown",
     b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-More: 2\r\n\r\n",
     [post(b"abc", (b"Transfer-Encoding", b"chunked"), chunked=True)]),
    ("expect 100-continue", b"POST / HTTP/1.1\r\n" + H + b"Expect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi",
     [post(b"hi", (b"Expect", b"100-Continue"), (b"Content-Length", b"2"), content_length=2,
           expect_continue=True)]),
    ("expect ignored for http/1.0", b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
     [req("POST", version="1.0", headers=[(b"Expect", b"100-continue"), (b"Content-Length", b"2")],
          body=b"hi", keep_alive=False, content_length=2)]),
    ("pipelined requests in order",
     b"GET /1 HTTP/1.1\r\n" + H + b"\r\nPOST /2 HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\n" + H + b"\r\n",
     [req(target=b"/1"), req("POST", b"/2", headers=[(b"Host", b"example"), (b"Content-Length", b"3")],
                             body=b"abc", content_length=3), req(target=b"/3")]),
    ("empty lines before a request are skipped", b"\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n", [req()]),
    ("upgrade is served as a plain request, then nothing more",
     b"GET / HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /next HTTP/1.1\r\n" + H + b"\r\n",
     [req(headers=[(b"Host", b"example"), (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")],
          keep_alive=False)]),
]

# (name, raw bytes, status of the error that must end the stream)
INVALID = [
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    ("response instead of request", b"HTTP/1.1 200 OK\r\n\r\n", 400),
    ("bad method token", b"G@T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("lower-case protocol", b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    ("missing version", b"GET /\r\n" + H + b"\r\n", 400),
    ("unsupported version 2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("invalid version 1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", 400),
    ("space inside target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("control char in target", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("raw non-ascii in target", b"GET /caf\xe9 HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("target in no known form", b"GET example/x HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("asterisk outside OPTIONS", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("CONNECT", b"CONNECT example:443 HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("http/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("two Host headers in http/1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("bare LF line endings", b"GET / HTTP/1.1\n" + b"Host: example\n\n", 400),
    ("bare LF after a header", b"GET / HTTP/1.1\r\nHost: example\nX: y\r\n\r\n", 400),
    ("bare CR in a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\rc\r\n\r\n", 400),
    ("NUL in a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\x00c\r\n\r\n", 400),
    ("control char in a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\x01c\r\n\r\n", 400),
    ("DEL in a value", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\x7fc\r\n\r\n", 400),
    ("NUL in a name", b"GET / HTTP/1.1\r\n" + H + b"X\x00A: b\r\n\r\n", 400),
    ("space inside a name", b"GET / HTTP/1.1\r\n" + H + b"X A: b\r\n\r\n", 400),
    ("whitespace before the colon", b"GET / HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n", 400),
    ("tab before the colon", b"GET / HTTP/1.1\r\n" + H + b"X-A\t: b\r\n\r\n", 400),
    ("obs-fold continuation line", b"GET / HTTP/1.1\r\n" + H + b"X-A: b\r\n c\r\n\r\n", 400),
    ("whitespace before the first header", b"GET / HTTP/1.1\r\n Host: example\r\n\r\n", 400),
    ("empty header name", b"GET / HTTP/1.1\r\n" + H + b": b\r\n\r\n", 400),
    ("header without colon", b"GET / HTTP/1.1\r\n" + H + b"NoColon\r\n\r\n", 400),
    ("Expect other than 100-continue", b"GET / HTTP/1.1\r\n" + H + b"Expect: something\r\n\r\n", 417),
    # Smuggling: framing that two parsers could read two ways.
    ("Content-Length with Transfer-Encoding",
     b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("Transfer-Encoding with Content-Length",
     b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400),
    ("duplicate Content-Length",
     b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("conflicting Content-Length",
     b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    ("Content-Length list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    ("Content-Length with sign", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc", 400),
    ("negative Content-Length", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    ("hex Content-Length", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x3\r\n\r\nabc", 400),
    ("Content-Length with inner space", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1 2\r\n\r\n", 400),
    ("empty Content-Length", b"POST / HTTP/1.1\r\n" + H + b"Content-Length:\r\n\r\n", 400),
    ("Content-Length overflow",
     b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    ("chunked not last", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    ("chunked twice", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("chunked in http/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("vertical tab before chunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400),
    ("empty Transfer-Encoding", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n\r\n", 400),
    ("coding other than chunked last", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 400),
    ("unsupported coding before chunked",
     b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("identity coding", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n", 400),
    ("look-alike coding", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
]

CHUNKED_HEAD = b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
INVALID_CHUNKED = [
    ("chunk size not hex", b"zz\r\nabc\r\n0\r\n\r\n"),
    ("chunk size with 0x", b"0x3\r\nabc\r\n0\r\n\r\n"),
    ("chunk size with sign", b"+3\r\nabc\r\n0\r\n\r\n"),
    ("chunk size with trailing space", b"3 \r\nabc\r\n0\r\n\r\n"),
    ("chunk size with leading space", b" 3\r\nabc\r\n0\r\n\r\n"),
    ("chunk size overflow", b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
    ("empty chunk size", b"\r\nabc\r\n0\r\n\r\n"),
    ("chunk size ended by bare LF", b"3\nabc\r\n0\r\n\r\n"),
    ("chunk extension ended by bare LF", b"3;ext\nabc\r\n0\r\n\r\n"),
    ("control char in chunk extension", b"3;e\x01xt\r\nabc\r\n0\r\n\r\n"),
    ("chunk data longer than its size", b"3\r\nabcdef\r\n0\r\n\r\n"),
    ("chunk data ended by bare LF", b"3\r\nabc\n0\r\n\r\n"),
    ("last chunk ended by bare LF", b"3\r\nabc\r\n0\n\r\n"),
    ("invalid trailer", b"3\r\nabc\r\n0\r\nX-T : 1\r\n\r\n"),
    ("Content-Length in trailers", b"3\r\nabc\r\n0\r\nContent-Length: 3\r\n\r\n"),
]
for _name, _body in INVALID_CHUNKED:
    INVALID.append((_name, CHUNKED_HEAD + _body, 400))


def run(parser: RequestParser, pieces) -> tuple[list[dict], int | None, list]:
    """Feed pieces; return the complete requests, the error status (or None) and raw events."""
    requests: list[dict] = []
    events_seen: list = []
    current = None
    error = None
    for piece in pieces:
        for kind, payload in parser.feed(piece):
            events_seen.append(kind)
            assert error is None, "no event may follow an ERROR"
            if kind == HEAD:
                assert current is None
                current = {"method": payload.method, "target": payload.target,
                           "version": payload.version, "headers": list(payload.headers),
                           "body": b"", "keep_alive": payload.keep_alive, "chunked": payload.chunked,
                           "content_length": payload.content_length,
                           "expect_continue": payload.expect_continue}
            elif kind == DATA:
                assert current is not None and isinstance(payload, (bytes, memoryview))
                current["body"] += payload
            elif kind == END:
                assert current is not None
                requests.append(current)
                current = None
            else:
                assert kind == ERROR and isinstance(payload, ProtocolError)
                error = payload.status
    return requests, error, events_seen


def split_lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def split_random(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    pieces, i = [], 0
    while i < len(data):
        n = rng.randint(1, 17)
        pieces.append(data[i:i + n])
        i += n
    return pieces


FEEDS = {
    "whole": lambda d: [d],
    "lines": split_lines,
    "bytes": lambda d: [d[i:i + 1] for i in range(len(d))],
    "random1": lambda d: split_random(d, 1),
    "random2": lambda d: split_random(d, 2),
    "random3": lambda d: split_random(d, 3),
}


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("name, raw, expected", VALID, ids=[v[0] for v in VALID])
def test_valid_requests(name, raw, expected, feed):
    requests, error, _ = run(RequestParser(), FEEDS[feed](raw))
    assert error is None
    assert requests == expected


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("name, raw, status", INVALID, ids=[v[0] for v in INVALID])
def test_invalid_requests_are_refused(name, raw, status, feed):
    parser = RequestParser()
    requests, error, _ = run(parser, FEEDS[feed](raw))
    assert error == status
    assert requests == []
    assert parser.failed
    # Nothing is ever parsed again on this connection.
    assert parser.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == []


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("name, raw, status", INVALID, ids=[v[0] for v in INVALID])
def test_request_after_an_invalid_one_is_never_served(name, raw, status, feed):
    good = b"GET /first HTTP/1.1\r\n" + H + b"\r\n"
    after = b"GET /after HTTP/1.1\r\n" + H + b"\r\n"
    requests, error, _ = run(RequestParser(), FEEDS[feed](good + raw + after))
    assert [r["target"] for r in requests] == [b"/first"]
    assert error == status


SMALL = Limits(request_line=64, request_fields=4, request_field_size=64, request_body=10)

LIMITED = [
    ("request line at the limit", b"GET /" + b"a" * (64 - 14) + b" HTTP/1.1\r\n" + H + b"\r\n", None),
    ("request line over the limit", b"GET /" + b"a" * (64 - 13) + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("very long request line", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    ("fields at the limit", b"GET / HTTP/1.1\r\n" + H + b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n", None),
    ("too many fields", b"GET / HTTP/1.1\r\n" + H + b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 431),
    ("field at the limit", b"GET / HTTP/1.1\r\n" + H + b"X: " + b"v" * (64 - 3) + b"\r\n\r\n", None),
    ("field over the limit", b"GET / HTTP/1.1\r\n" + H + b"X: " + b"v" * (64 - 2) + b"\r\n\r\n", 431),
    ("huge field", b"GET / HTTP/1.1\r\n" + H + b"X: " + b"v" * 100000 + b"\r\n\r\n", 431),
    ("body at the limit", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\n0123456789", None),
    ("declared body over the limit", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 11\r\n\r\n01234567890", 413),
    ("chunked body over the limit",
     b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n6\r\n678901\r\n0\r\n\r\n", 413),
    ("too many trailer fields",
     b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 431),
]


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("name, raw, status", LIMITED, ids=[v[0] for v in LIMITED])
def test_limits(name, raw, status, feed):
    requests, error, _ = run(RequestParser(SMALL), FEEDS[feed](raw))
    assert error == status
    assert len(requests) == (1 if status is None else 0)


def test_unlimited_body():
    limits = Limits(request_body=0)
    body = b"x" * 5000
    requests, error, _ = run(RequestParser(limits),
                             [b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5000\r\n\r\n" + body])
    assert error is None and requests[0]["body"] == body


def test_large_body_with_its_head_is_a_view_of_the_received_bytes():
    """A body arriving with its head is not copied off it (nor fed to llhttp, which copies too);
    a request pipelined behind it still parses."""
    parser = RequestParser()
    body = bytes(range(256)) * 256  # 64 KiB
    data = (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 65536\r\n\r\n" + body
            + b"GET /next HTTP/1.1\r\n" + H + b"\r\n")
    events = parser.feed(data)
    kinds = [kind for kind, _ in events]
    assert kinds == [HEAD, DATA, END, HEAD, END]
    piece = events[1][1]
    assert isinstance(piece, memoryview) and piece.obj is data and bytes(piece) == body
    assert events[3][1].target == b"/next"
    small = parser.feed(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc")
    assert [(kind, bytes(p) if kind == DATA else None) for kind, p in small[1:]] == [(DATA, b"abc"), (END, None)]


def test_endless_header_is_cut_off_with_bounded_buffering():
    """A header that never ends is refused once the head outgrows every limit together."""
    parser = RequestParser(SMALL)
    fed = 0
    events = parser.feed(b"GET / HTTP/1.1\r\nHost: example\r\nX: ")
    while not events:
        events = parser.feed(b"v" * 4096)
        fed += 4096
        assert fed < SMALL.head_bytes + (1 << 17), "the parser kept buffering"
    assert [k for k, _ in events] == [ERROR]
    assert events[0][1].status == 431


def test_body_events_arrive_as_data_is_fed():
    """The body streams: each fed piece is available at once, not held until the end."""
    parser = RequestParser()
    events = parser.feed(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 6\r\n\r\nab")
    assert [k for k, _ in events] == [HEAD, DATA]
    assert parser.feed(b"cd") == [(DATA, b"cd")]
    assert parser.feed(b"ef") == [(DATA, b"ef"), (END, None)]


def test_in_head_tracks_a_partial_head():
    parser = RequestParser()
    assert not parser.in_head
    parser.feed(b"GET / HT")
    assert parser.in_head
    parser.feed(b"TP/1.1\r\n" + H + b"\r\n")
    assert not parser.in_head


def test_a_refused_request_line_is_logged_with_its_own_version_not_the_last_ones():
    parser = RequestParser()
    events = parser.feed(b"GET /a HTTP/1.1\r\n" + H + b"\r\nGET /b http/1.1\r\n" + H + b"\r\n")
    assert [kind for kind, _ in events] == [HEAD, END, ERROR]
    assert parser.request_line_environ() == {"REQUEST_METHOD": "GET", "RAW_URI": "/b",
                                             "SERVER_PROTOCOL": "-"}
