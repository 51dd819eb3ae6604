"""The access log tells what happened to every request, in the bytes the client sent."""

from __future__ import annotations

import json

from conftest import http_get, raw_exchange, wait_for


def test_requests_the_parser_refused_are_logged_with_their_status(start_server):
    server = start_server(["--bind", "127.0.0.1:0", "--access-log", "-", "testapp:app"])
    assert raw_exchange(server, b"GET /ok HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n") \
        .startswith(b"HTTP/1.1 400")
    assert raw_exchange(server, b"\x01\x02 garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    long_target = b"/" + b"x" * 9000
    assert raw_exchange(server, b"GET " + long_target + b" HTTP/1.1\r\nHost: t\r\n\r\n") \
        .startswith(b"HTTP/1.1 414")
    server.wait_log(r'"GET /ok HTTP/1.1" 400 \d+')
    server.wait_log(r'127\.0\.0\.1 - - \[[^]]+\] "-" 400 \d+')
    server.wait_log(r'"GET /x+ -" 414 \d+')
    assert server.stop() == 0


def test_requests_cut_by_a_timeout_are_logged_408(start_server):
    server = start_server(["--bind", "127.0.0.1:0", "--access-log", "-", "--header-timeout", "1",
                           "--body-timeout", "1", "testapp:app"])
    assert raw_exchange(server, b"GET /half HTTP/1.1\r\nHost: t\r\n").startswith(b"HTTP/1.1 408")
    assert raw_exchange(server, b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab") \
        .startswith(b"HTTP/1.1 408")
    server.wait_log(r'"GET /half HTTP/1.1" 408 \d+')
    server.wait_log(r'"POST /body HTTP/1.1" 408 \d+')
    assert server.stop() == 0


def test_non_ascii_request_bytes_are_escaped_not_mojibake(start_server, tmp_path):
    server = start_server(["--bind", "127.0.0.1:0", "--access-log", "-", "testapp:app"])
    raw_exchange(server, "GET /caf%C3%A9 HTTP/1.1\r\nHost: t\r\nUser-Agent: ünï\r\n"
                         "Referer: http://r/café\r\nConnection: close\r\n\r\n".encode())
    server.wait_log(r'"GET /caf%C3%A9 HTTP/1\.1" 200 \d+ "http://r/caf\\xc3\\xa9" "\\xc3\\xbcn\\xc3\\xaf"')
    assert "Ã" not in server.log()
    path = tmp_path / "access.json"
    js = start_server(["--bind", "127.0.0.1:0", "--access-log", str(path),
                       "--access-log-format", "json", "testapp:app"])
    http_get(js, "/caf%C3%A9", headers={"Referer": "http://r/é".encode().decode("latin-1")})
    wait_for(lambda: path.exists() and path.read_text().strip(), message="json access line")
    record = json.loads(path.read_text().splitlines()[0])
    assert record["referer"] == "http://r/\\xc3\\xa9"
    assert record["uri"] == "/caf%C3%A9"
