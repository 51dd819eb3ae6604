"""The connection's protocol state machine, driven directly: bytes and app calls in, actions out.

No server and no socket: each sample is fed whole and then byte by byte (as
h11's tests do), the app's calls are made by hand, and what comes out (bytes
to send, whether a request is ready, keep / close / linger / drain) is checked.
"""

from __future__ import annotations

import sys

import pytest

from sharedsock.errors import ProtocolError
from sharedsock.http import response as rsp
from sharedsock.http.exchange import (
    CLOSE,
    CLOSED,
    DRAIN,
    DRAIN_LIMIT,
    KEEP,
    LINGER,
    LINGER_LIMIT,
    PREFETCH_LIMIT,
    READY,
    WAIT,
    End,
    Exchange,
    Response,
    Turn,
)
from sharedsock.http.parser import Limits, RequestHead

STEPS = [None, 1]  # whole, then byte by byte


def _exchange(keepalive: bool = True) -> Exchange:
    return Exchange(Limits(), keepalive, "t")


def _pieces(data: bytes, step: int | None) -> list[bytes]:
    if step is None:
        return [data] if data else []
    return [data[i:i + step] for i in range(0, len(data), step)]


class Client:
    """The bytes a client sent, handed to the exchange as a driver would: ``step`` at a time."""

    def __init__(self, ex: Exchange, data: bytes, step: int | None) -> None:
        self.ex = ex
        self.pieces = _pieces(data, step)

    def until_ready(self) -> list[Turn]:
        """Feed (selector side) until a request is ready; returns the turns seen."""
        turns = []
        while self.pieces:
            turn = self.ex.receive(self.pieces.pop(0))
            turns.append(turn)
            if turn == READY:
                return turns
        return turns

    def body(self) -> bytes:
        """Read the request body as the app would (serving side)."""
        parts = []
        while True:
            piece = self.ex.read_body()
            if piece is None:
                assert self.pieces, "the body needs bytes the client never sent"
                self.ex.receive_body(self.pieces.pop(0))
            elif not piece:
                return b"".join(parts)
            else:
                parts.append(piece)

    def drain(self) -> End:
        while True:
            end = self.ex.drain()
            if end is not None:
                return end
            if not self.pieces:
                return LINGER  # the client stopped sending: the driver's receive fails
            self.ex.receive_body(self.pieces.pop(0))


def _request(ex: Exchange) -> RequestHead:
    request = ex.next_request()
    assert type(request) is RequestHead, request
    return request


def respond(ex: Exchange, status: str = "200 OK", headers: list | None = None, body=(b"hello",),
            *, whole: bool = True, draining: bool = False) -> bytes:
    """What a driver sends for an app returning ``body`` (a list when ``whole``, else an iterator)."""
    ex.start_response(status, list(headers or []))
    out = []
    if whole:
        data = b"".join(body)
        whole = ex.whole_body(data, draining)
        if whole is not None:
            assert ex.response == Response.DONE
            return b"".join(whole)  # nothing left to finish
    else:
        for data in body:
            if ex.overrun:
                break
            if ex.response < Response.STARTED:
                out.extend(ex.head_with(data, draining))
            else:
                out.append(ex.frame(data))
    out.append(ex.finish(draining))
    return b"".join(out)


def parse(data: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers[name.lower()] = value
    return lines[0], headers, body


GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def _post(body: bytes, *extra: bytes) -> bytes:
    return (b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n" % len(body)
            + b"".join(e + b"\r\n" for e in extra) + b"\r\n" + body)


def _chunked(body: bytes, *extra: bytes) -> bytes:
    chunks = b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in _pieces(body, 7))
    return (b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            + b"".join(e + b"\r\n" for e in extra) + b"\r\n" + chunks + b"0\r\n\r\n")


def test_states_have_names():
    assert repr(READY) == "<Turn.READY: 1>"
    assert [s.name for s in Response] == ["NONE", "PLANNED", "STARTED", "DONE"]
    assert [e.name for e in End] == ["KEEP", "CLOSE", "LINGER", "DRAIN"]


# -- requests and their bodies -------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
def test_request_without_body_is_ready_at_its_head_and_kept(step):
    ex = _exchange()
    client = Client(ex, GET, step)
    turns = client.until_ready()
    assert turns[-1] == READY and set(turns[:-1]) <= {WAIT}
    assert ex.in_head is False
    head = _request(ex)
    assert (head.method, head.target, ex.body_done) == ("GET", b"/", True)
    assert ex.read_body() == b""
    status, headers, body = parse(respond(ex))
    assert (status, headers["content-length"], body) == ("HTTP/1.1 200 OK", "5", b"hello")
    assert "connection" not in headers
    assert ex.end() == KEEP
    assert ex.next_request() is None
    assert ex.between_requests and ex.idle


@pytest.mark.parametrize("step", STEPS)
def test_a_head_arriving_is_not_idle(step):
    ex = _exchange()
    assert ex.receive(GET[:10]) == WAIT
    assert ex.in_head and not ex.idle and not ex.between_requests


@pytest.mark.parametrize("step", STEPS)
def test_small_body_is_received_before_the_request_is_ready(step):
    payload = b"a=1&b=2" * 10
    ex = _exchange()
    client = Client(ex, _post(payload), step)
    seen_prefetching = False
    while client.pieces:
        turn = ex.receive(client.pieces.pop(0))
        seen_prefetching |= ex.prefetching
        if turn == READY:
            break
    assert turn == READY and not client.pieces  # ready only with the whole body
    assert seen_prefetching and ex.prefetched == len(payload)
    _request(ex)
    assert not ex.prefetching
    assert client.body() == payload
    respond(ex)
    assert ex.end() == KEEP


@pytest.mark.parametrize("step", [None, 1000])
def test_body_over_the_prefetch_limit_is_ready_at_the_head(step):
    payload = b"x" * (PREFETCH_LIMIT + 1)
    ex = _exchange()
    client = Client(ex, _post(payload), step)
    client.until_ready()
    head = _request(ex)
    if step is not None:
        assert ex.consumed == 0 and head.content_length == len(payload)
    assert client.body() == payload
    assert ex.consumed == len(payload)
    respond(ex)
    assert ex.end() == KEEP


@pytest.mark.parametrize("step", [None, 4096])
def test_prefetch_stops_at_its_limit_for_chunked_bodies(step):
    payload = b"y" * (PREFETCH_LIMIT + 100)
    ex = _exchange()
    client = Client(ex, _chunked(payload), step)
    assert client.until_ready()[-1] == READY
    assert ex.prefetched >= PREFETCH_LIMIT
    _request(ex)
    assert client.body() == payload


@pytest.mark.parametrize("step", STEPS)
def test_chunked_body_is_decoded(step):
    payload = b"hello chunked world"
    ex = _exchange()
    client = Client(ex, _chunked(payload), step)
    assert client.until_ready()[-1] == READY
    head = _request(ex)
    assert head.chunked
    assert client.body() == payload
    status, headers, _ = parse(respond(ex))
    assert status == "HTTP/1.1 200 OK" and "connection" not in headers
    assert ex.end() == KEEP


@pytest.mark.parametrize("step", STEPS)
def test_100_continue_is_sent_once_when_the_app_reads_before_responding(step):
    payload = b"z" * 100
    ex = _exchange()
    client = Client(ex, _post(payload, b"Expect: 100-continue"), step)
    assert client.until_ready()[-1] == READY  # ready at the head: the client waits
    _request(ex)
    assert ex.expecting
    assert ex.take_continue() == rsp.CONTINUE
    assert not ex.expecting
    assert client.body() == payload
    respond(ex)
    assert ex.end() == KEEP


@pytest.mark.parametrize("step", STEPS)
def test_no_100_continue_once_the_response_started(step):
    ex = _exchange()
    client = Client(ex, _post(b"q" * 10, b"Expect: 100-continue"), step)
    client.until_ready()
    _request(ex)
    ex.start_response("200 OK", [])
    ex.head_with(b"early", False)
    assert ex.response == Response.STARTED
    assert ex.take_continue() == b""  # it would land inside the response


@pytest.mark.parametrize("step", STEPS)
def test_unread_body_behind_a_100_continue_closes(step):
    """The client waits for permission: nothing to drain, and the head says close."""
    ex = _exchange()
    Client(ex, _post(b"q" * 10, b"Expect: 100-continue"), step).until_ready()
    _request(ex)
    _, headers, _ = parse(respond(ex))
    assert headers["connection"] == "close"
    assert ex.end() == LINGER
    assert ex.drain() == LINGER


def test_http10_expect_is_ignored():
    ex = _exchange()
    data = b"POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc"
    assert ex.receive(data) == READY
    _request(ex)
    assert not ex.expecting


@pytest.mark.parametrize("step", STEPS)
def test_pipelined_requests_are_served_in_order(step):
    ex = _exchange()
    client = Client(ex, GET + _post(b"body") + b"GET /third HTTP/1.1\r\nHost: t\r\n\r\n", step)
    client.until_ready()
    targets = []
    while True:
        request = ex.next_request()
        if request is None:
            if not client.pieces:
                break
            client.until_ready()
            continue
        targets.append(request.target)
        if not ex.body_done:
            assert client.body() == b"body"
        respond(ex)
        assert ex.end() == KEEP
    assert targets == [b"/", b"/p", b"/third"]


@pytest.mark.parametrize("step", STEPS)
def test_a_request_after_a_closing_one_is_refused_and_the_close_lingers(step):
    ex = _exchange()
    client = Client(ex, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" + GET, step)
    client.until_ready()
    _request(ex)
    _, headers, _ = parse(respond(ex))
    assert headers["connection"] == "close"
    client.until_ready()  # the rest arrives before the driver closes
    assert ex.end() == LINGER  # input is waiting: a plain close would reset the response


@pytest.mark.parametrize("step", STEPS)
def test_close_without_pending_input_is_plain(step):
    ex = _exchange()
    Client(ex, b"GET / HTTP/1.0\r\n\r\n", step).until_ready()
    _request(ex)
    _, headers, _ = parse(respond(ex))
    assert headers["connection"] == "close"
    assert ex.end() == CLOSE


def test_http10_keep_alive_is_said_explicitly():
    ex = _exchange()
    ex.receive(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    _request(ex)
    _, headers, _ = parse(respond(ex))
    assert headers["connection"] == "keep-alive"
    assert ex.end() == KEEP


def test_keepalive_off_closes_every_connection():
    ex = _exchange(keepalive=False)
    ex.receive(GET)
    _request(ex)
    _, headers, _ = parse(respond(ex))
    assert headers["connection"] == "close"
    assert ex.end() == CLOSE


@pytest.mark.parametrize("step", STEPS)
def test_a_bad_request_is_refused_after_the_good_ones(step):
    ex = _exchange()
    client = Client(ex, GET + b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n" + GET, step)
    client.until_ready()
    _request(ex)
    respond(ex)
    assert ex.end() == KEEP
    error = ex.next_request()
    if error is None:  # fed piece by piece, the rest arrives after the first response
        assert client.until_ready()[-1] == READY
        error = ex.next_request()
    assert isinstance(error, ProtocolError) and error.status == 400
    assert ex.next_request() is None  # nothing after it is ever served
    status, headers, _ = parse(ex.refusal(error))
    assert status == "HTTP/1.1 400 Bad Request" and headers["connection"] == "close"


# -- response framing ----------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
def test_streamed_response_is_chunked(step):
    ex = _exchange()
    Client(ex, GET, step).until_ready()
    _request(ex)
    _, headers, body = parse(respond(ex, body=[b"one", b"two"], whole=False))
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"
    assert ex.sent == len(b"3\r\none\r\n3\r\ntwo\r\n")  # framed body bytes; the last chunk is not counted
    assert ex.end() == KEEP


def test_streamed_response_to_http10_is_close_delimited():
    ex = _exchange()
    ex.receive(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    _request(ex)
    _, headers, body = parse(respond(ex, body=[b"one", b"two"], whole=False))
    assert headers["connection"] == "close" and "transfer-encoding" not in headers
    assert body == b"onetwo"
    assert ex.end() == CLOSE


@pytest.mark.parametrize("method,status,has_length", [
    ("HEAD", "200 OK", True), ("GET", "204 No Content", False), ("GET", "304 Not Modified", True),
])
def test_head_204_304_send_no_body(method, status, has_length):
    ex = _exchange()
    ex.receive(f"{method} / HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    _request(ex)
    headers = [("Content-Length", "5")] if has_length else []
    line, got, body = parse(respond(ex, status, headers, body=[b"hello"], whole=False))
    assert line == f"HTTP/1.1 {status}" and body == b""
    assert ("content-length" in got) == has_length
    assert ex.sent == 0
    assert ex.end() == KEEP


def test_head_with_an_empty_body_gets_no_invented_length():
    ex = _exchange()
    ex.receive(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
    _request(ex)
    _, headers, _ = parse(respond(ex, body=[]))
    assert "content-length" not in headers and "transfer-encoding" not in headers


def test_empty_response_gets_content_length_zero():
    ex = _exchange()
    ex.receive(GET)
    _request(ex)
    _, headers, body = parse(respond(ex, body=[]))
    assert headers["content-length"] == "0" and body == b""
    assert ex.end() == KEEP


@pytest.mark.parametrize("whole", [True, False])
def test_content_length_overrun_is_cut_and_closes(whole):
    ex = _exchange()
    ex.receive(GET)
    _request(ex)
    out = respond(ex, headers=[("Content-Length", "3")], body=[b"hel", b"lo"] if not whole else [b"hello"],
                  whole=whole)
    _, headers, body = parse(out)
    assert body == b"hel"
    assert ex.overrun and ex.sent == 3
    if whole:
        assert headers["connection"] == "close"  # known before the head went
    assert ex.end() == CLOSE
    assert ex.frame(b"more") == b""  # later writes are dropped


def test_content_length_overrun_in_one_write_says_close():
    ex = _exchange()
    ex.receive(GET)
    _request(ex)
    _, headers, body = parse(respond(ex, headers=[("Content-Length", "2")], body=[b"hello"], whole=False))
    assert body == b"he" and headers["connection"] == "close"


def test_content_length_underrun_of_a_whole_body_closes():
    ex = _exchange()
    ex.receive(GET)
    _request(ex)
    _, _, body = parse(respond(ex, headers=[("Content-Length", "10")], body=[b"hello"]))
    assert body == b"hello" and ex.underrun
    assert ex.end() == CLOSE


def test_start_response_returns_the_drivers_write():
    ex = _exchange()
    ex.receive(GET)
    _request(ex)
    ex.write = write = object()
    assert ex.start_response("200 OK", []) is write


def test_content_length_underrun_closes():
    ex = _exchange()
    ex.receive(GET)
    _request(ex)
    _, headers, body = parse(respond(ex, headers=[("Content-Length", "10")], body=[b"hello"], whole=False))
    assert body == b"hello" and "connection" not in headers  # the head went before anyone knew
    assert ex.underrun and not ex.keep_alive
    assert ex.end() == CLOSE


def test_app_asking_to_close_is_honoured():
    ex = _exchange()
    ex.receive(GET)
    _request(ex)
    _, headers, _ = parse(respond(ex, headers=[("Connection", "close")]))
    assert headers["connection"] == "close"
    assert ex.end() == CLOSE


def test_draining_says_close():
    ex = _exchange()
    ex.receive(GET)
    _request(ex)
    _, headers, _ = parse(respond(ex, draining=True))
    assert headers["connection"] == "close"
    assert ex.end() == CLOSE


def test_sendfile_plan_takes_the_declared_length_only():
    ex = _exchange()
    ex.receive(GET)
    _request(ex)
    ex.start_response("206 Partial Content", [("Content-Length", "4")])
    assert ex.can_send_file()
    _, headers, _ = parse(ex.file_head(100, False))
    assert headers["content-length"] == "4"
    assert ex.file_count(100) == 4
    ex.file_sent(4)
    assert ex.finish(False) == b"" and not ex.underrun
    assert ex.end() == KEEP


def test_sendfile_gets_the_file_length():
    ex = _exchange()
    ex.receive(GET)
    _request(ex)
    ex.start_response("200 OK", [])
    _, headers, _ = parse(ex.file_head(12, False))
    assert headers["content-length"] == "12" and ex.file_count(12) == 12


def test_no_sendfile_into_a_chunked_response():
    ex = _exchange()
    ex.receive(GET)
    _request(ex)
    assert not ex.can_send_file()  # no start_response yet
    ex.start_response("200 OK", [])
    ex.head_with(b"x", False)
    assert not ex.can_send_file()


# -- the app's mistakes and errors ---------------------------------------------


def test_start_response_twice_needs_exc_info():
    ex = _exchange()
    ex.receive(GET)
    _request(ex)
    ex.start_response("200 OK", [])
    with pytest.raises(RuntimeError, match="second time"):
        ex.start_response("200 OK", [])
    try:
        raise ValueError("boom")
    except ValueError:
        ex.start_response("500 Oops", [], sys.exc_info())  # allowed: nothing sent yet
    assert ex.status == "500 Oops" and ex.response == Response.PLANNED
    ex.head_with(b"x", False)
    try:
        raise KeyError("late")
    except KeyError:
        with pytest.raises(KeyError):
            ex.start_response("500 Oops", [], sys.exc_info())


def test_no_start_response_is_an_error():
    ex = _exchange()
    ex.receive(GET)
    _request(ex)
    with pytest.raises(RuntimeError, match="did not call start_response"):
        ex.finish(False)
    with pytest.raises(RuntimeError, match="did not call start_response"):
        ex.whole_body(b"x", False)


@pytest.mark.parametrize("step", STEPS)
def test_errors_before_the_head_get_an_answer(step):
    ex = _exchange()
    client = Client(ex, _post(b"unread body"), step)
    client.until_ready()
    _request(ex)
    ex.start_response("200 OK", [])
    status, _, _ = parse(ex.error_answer(ProtocolError(413, "too big")))
    assert status == "HTTP/1.1 413 Request Entity Too Large" and ex.status.startswith("413 ")
    # The client sent a body the app may have left unread: closing could reset the answer.
    assert ex.end_after_error() == LINGER
    client.body()
    assert ex.end_after_error() == LINGER
    status, _, body = parse(ex.crash_answer())
    assert status == "HTTP/1.1 500 Internal Server Error" and body == b"Internal Server Error\n"
    status, _, _ = parse(ex.timeout_answer())
    assert status == "HTTP/1.1 504 Gateway Timeout"


def test_after_an_error_a_request_without_a_body_closes():
    ex = _exchange()
    ex.receive(GET)
    _request(ex)
    parse(ex.crash_answer())
    assert ex.end_after_error() == CLOSE


def test_errors_after_the_head_get_none():
    ex = _exchange()
    ex.receive(_post(b"x" * (PREFETCH_LIMIT + 10)))
    _request(ex)
    ex.start_response("200 OK", [])
    ex.head_with(b"partial", False)
    assert ex.error_answer(ProtocolError(400, "bad")) == b""
    assert ex.crash_answer() == b"" and ex.timeout_answer() == b""
    assert ex.status == "200 OK"
    assert ex.end_after_error() == LINGER  # the client may still be sending the body


@pytest.mark.parametrize("step", STEPS)
def test_a_bad_body_the_app_swallowed_is_answered_with_its_error(step):
    ex = _exchange()
    client = Client(ex, b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", step)
    assert client.until_ready()[-1] == READY
    _request(ex)
    with pytest.raises(ProtocolError) as first:
        client.body()
    with pytest.raises(ProtocolError) as again:
        ex.read_body()
    assert again.value is first.value
    ex.start_response("200 OK", [])
    with pytest.raises(ProtocolError) as raised:
        ex.whole_body(b"fine", False)
    assert raised.value is first.value
    assert parse(ex.error_answer(first.value))[0] == "HTTP/1.1 400 Bad Request"


def test_a_body_the_driver_gave_up_on_stays_failed():
    ex = _exchange()
    ex.receive(_post(b"x" * (PREFETCH_LIMIT + 10))[:-1])
    _request(ex)
    timeout = ProtocolError(408, "request body too slow")
    ex.body_failed(timeout)
    with pytest.raises(ProtocolError) as raised:
        ex.read_body()
    assert raised.value is timeout
    ex.start_response("200 OK", [])
    with pytest.raises(ProtocolError):
        ex.finish(False)


# -- reading past an unread body -----------------------------------------------


@pytest.mark.parametrize("step", STEPS)
def test_unread_small_body_that_came_with_its_head_needs_no_drain(step):
    ex = _exchange()
    client = Client(ex, _post(b"p" * 1000) + GET, step)
    client.until_ready()
    _request(ex)
    _, headers, _ = parse(respond(ex))
    assert "connection" not in headers
    assert ex.end() == KEEP
    client.until_ready()
    assert _request(ex).method == "GET"


@pytest.mark.parametrize("step", STEPS)
def test_a_body_that_came_with_its_head_is_handed_out_whole_once(step):
    payload = b"w" * 5000
    ex = _exchange()
    client = Client(ex, _post(payload) + GET, step)
    client.until_ready()
    _request(ex)
    assert ex.body_done and ex.consumed == len(payload)
    assert ex.take_body() == payload
    assert ex.take_body() is None and ex.read_body() == b""
    respond(ex)
    assert ex.end() == KEEP
    client.until_ready()
    assert _request(ex).method == "GET"


def test_a_body_in_one_piece_is_handed_out_without_a_copy():
    payload = b"o" * 100
    ex = _exchange()
    ex.receive(_post(payload)[:-len(payload)])
    ex.receive(payload)
    _request(ex)
    assert ex.take_body() is payload


@pytest.mark.parametrize("data", [
    _post(b"c" * 100)[:-1],  # not all here
    _post(b"c" * 100, b"Expect: 100-continue"),  # the client may wait for the 100 Continue
], ids=["incomplete", "expect-continue"])
def test_a_body_not_known_whole_is_read_through_read_body(data):
    ex = _exchange()
    ex.receive(data)
    _request(ex)
    assert not ex.body_done and ex.take_body() is None
    assert ex.read_body()  # the piece that is here


@pytest.mark.parametrize("step", STEPS)
def test_a_chunked_body_that_came_with_its_head_is_handed_out_whole(step):
    payload = bytes(range(256)) * 3
    ex = _exchange()
    Client(ex, _chunked(payload), step).until_ready()
    _request(ex)
    assert ex.take_body() == payload and ex.consumed == len(payload)


@pytest.mark.parametrize("step", [4096, PREFETCH_LIMIT])
def test_unread_large_body_within_the_drain_limit_is_read_past(step):
    ex = _exchange()
    client = Client(ex, _post(b"d" * DRAIN_LIMIT), step)
    client.until_ready()
    _request(ex)
    assert ex.read_body()  # the app reads a little, then answers
    respond(ex)
    assert ex.keep_alive and ex.end() == DRAIN
    assert client.drain() == KEEP


def test_unread_body_over_the_drain_limit_closes():
    ex = _exchange()
    ex.receive(_post(b"d" * (DRAIN_LIMIT + PREFETCH_LIMIT + 1))[:200])
    _request(ex)
    _, headers, _ = parse(respond(ex))
    assert headers["connection"] == "close"
    assert ex.end() == LINGER


def test_unread_chunked_body_of_unknown_length_closes():
    ex = _exchange()
    ex.receive(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n" % (PREFETCH_LIMIT + 1) + b"c" * (PREFETCH_LIMIT + 1))
    _request(ex)
    _, headers, _ = parse(respond(ex))
    assert headers["connection"] == "close"
    assert ex.end() == LINGER


def test_unread_chunked_body_already_received_is_drained():
    ex = _exchange()
    data = _chunked(b"c" * 100)
    ex.receive(data[:len(data) - 30])
    _request(ex)
    ex.receive_body(data[len(data) - 30:])  # the rest came while the app ran
    _, headers, _ = parse(respond(ex))
    assert "connection" not in headers
    assert ex.end() == DRAIN and ex.drain() == KEEP


def test_draining_more_than_the_limit_gives_up():
    """A chunked body known complete may still be larger than we are willing to read past."""
    big = b"%x\r\n%b\r\n" % (DRAIN_LIMIT + 1, b"c" * (DRAIN_LIMIT + 1))
    ex = _exchange()
    ex.receive(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
    _request(ex)
    ex.receive_body(big + b"0\r\n\r\n")  # all of it came while the app ran
    respond(ex)
    assert ex.end() == DRAIN
    assert ex.drain() == LINGER


def test_a_bad_unread_body_is_not_drained():
    ex = _exchange()
    ex.receive(b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n" % (PREFETCH_LIMIT + 1) + b"c" * (PREFETCH_LIMIT + 1))
    _request(ex)
    # the client sends the rest and it ends with a framing error; known before the drain decision
    ex.receive_body(b"\r\nnot-a-size\r\n")
    _, headers, _ = parse(respond(ex))
    assert headers["connection"] == "close"
    assert ex.end() == LINGER


# -- lingering -------------------------------------------------------------------


def test_linger_discards_up_to_its_limit():
    ex = _exchange()
    ex.receive(GET + GET[:5])
    ex.linger()
    assert ex.lingering and ex.idle and not ex.between_requests
    assert ex.next_request() is None  # what was queued is dropped
    assert ex.discard(LINGER_LIMIT - 1) == WAIT
    assert ex.discard(1) == CLOSED
