"""--proxy-protocol on a real server: PROXY headers sent by hand, and by a real HAProxy.

The client connects from 127.0.0.1 (allowed by default) or 127.0.0.2 (not allowed);
the addresses in the headers are documentation ranges no option here trusts,
or 127.0.0.3, which ``--forwarded-allow-ips`` trusts in the servers that need it.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import (
    DEADLINE,
    SHAREDSOCK,
    at,
    debian_binary,
    listener_urls,
    module_server,
    parse_response,
    read_until_close,
    stop_process_group,
    wait_for,
)
from sharedsock.proxy_protocol import V2_SIGNATURE

GET = b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
V1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n"


def v2(command: int, family: int, addresses: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(addresses)) + addresses


V2_INET = v2(1, 0x11, socket.inet_aton("192.0.2.8") + socket.inet_aton("198.51.100.1") +
             struct.pack("!HH", 40000, 443))
V2_INET6 = v2(1, 0x21, socket.inet_pton(socket.AF_INET6, "2001:db8::9") +
              socket.inet_pton(socket.AF_INET6, "2001:db8::1") + struct.pack("!HH", 40001, 443))
V2_LOCAL = v2(0, 0x00, b"")


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """``servers(name, start_method)`` -> a server (TCP and unix listeners), started once."""
    variants = {
        "on": ["--access-log", "-"],
        "xff": ["--forwarded-allow-ips", "127.0.0.3"],
        "elsewhere": ["--proxy-allow-ips", "10.0.0.0/8"],
        "slow": ["--header-timeout", "1"],
    }
    started: dict[tuple[str, str], object] = {}

    def get(name: str, start_method: str):
        key = (name, start_method)
        if key not in started:
            started[key] = module_server(tmp_path_factory, ["--workers", "1", "--start-method", start_method,
                                                            "--proxy-protocol", *variants[name],
                                                            "http_apps:app"])
        return started[key]

    yield get
    for server in started.values():
        server.kill()  # type: ignore[attr-defined]


def exchange(server, *pieces: bytes, source: str = "127.0.0.1", unix: bool = False) -> bytes:
    """Send each piece in its own send() (TCP_NODELAY), then read until the server closes."""
    if unix:
        sock = at(server, listener_urls(server)["unix"]).connect()
    else:
        sock = socket.create_connection(("127.0.0.1", server.port), DEADLINE, source_address=(source, 0))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with sock:
        try:
            for piece in pieces:
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a peer refused at accept may be closed before the client has sent a byte
        return read_until_close(sock)


def environ_of(raw: bytes) -> dict:
    status, _, body = parse_response(raw)
    assert status == 200, raw
    return json.loads(body)


@pytest.mark.parametrize("header, addr, port", [
    (V1, "192.0.2.7", "56324"), (V2_INET, "192.0.2.8", "40000"), (V2_INET6, "2001:db8::9", "40001"),
], ids=["v1", "v2-inet", "v2-inet6"])
def test_the_header_names_the_client(servers, start_method, header, addr, port):
    server = servers("on", start_method)
    environ = environ_of(exchange(server, header + GET))
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == (addr, port)
    # Split anywhere, header and request arrive in separate reads.
    environ = environ_of(exchange(server, header[:3], header[3:-1], header[-1:], GET))
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == (addr, port)
    environ = environ_of(exchange(server, header + GET, unix=True))
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == (addr, port)


def test_local_and_unknown_keep_the_real_peer(servers, start_method):
    server = servers("on", start_method)
    for header in (V2_LOCAL, b"PROXY UNKNOWN\r\n"):
        environ = environ_of(exchange(server, header + GET))
        assert environ["REMOTE_ADDR"] == "127.0.0.1"
        assert environ["REMOTE_PORT"].isdigit() and environ["REMOTE_PORT"] != "0"


def test_kept_alive_requests_keep_the_headers_client(servers, start_method):
    server = servers("on", start_method)
    keep = GET.replace(b"Connection: close", b"Connection: keep-alive")
    raw = exchange(server, V1 + keep, keep, GET)
    bodies = raw.split(b"\r\n\r\n{")
    assert len(bodies) == 4, raw
    assert raw.count(b'"REMOTE_ADDR": "192.0.2.7"') == 3


@pytest.mark.parametrize("data", [
    GET,  # no header at all
    b"PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n" + GET,
    b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\n" + GET,
    b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n" + GET,
    V2_SIGNATURE + b"\x21\x11\x00\x04abcd" + GET,  # too short for two IPv4 addresses and ports
    V2_SIGNATURE + b"\x23\x11\x00\x0c" + bytes(12) + GET,  # command 3
], ids=["none", "v1-short", "v1-bare-lf", "v1-too-long", "v2-short-block", "v2-bad-command"])
def test_a_malformed_header_closes_without_a_word(servers, start_method, data):
    server = servers("on", start_method)
    assert exchange(server, data) == b""
    # The app never saw it: the access log shows only the request that follows.
    before = server.log().count('"GET /environ')
    environ_of(exchange(server, V1 + GET))
    wait_for(lambda: server.log().count('"GET /environ') == before + 1, message="one access line")
    assert server.log().count('"GET /environ') == before + 1
    assert "192.0.2.7" in server.log().rsplit('"GET /environ', 1)[0].rsplit("\n", 1)[-1]


def test_a_peer_not_allowed_is_closed_even_with_a_valid_header(servers, start_method):
    server = servers("on", start_method)
    assert exchange(server, V1 + GET, source="127.0.0.2") == b""
    server.wait_log(r"closed connection from 127\.0\.0\.2: not in --proxy-allow-ips")
    elsewhere = servers("elsewhere", start_method)
    assert exchange(elsewhere, V1 + GET) == b""
    assert exchange(elsewhere, V1 + GET, unix=True) == b""  # loopback is not allowed there
    assert environ_of(exchange(servers("on", start_method), V1 + GET, unix=True))["REMOTE_ADDR"] == "192.0.2.7"


def test_forwarded_headers_are_trusted_from_the_client_the_header_names(servers, start_method):
    """The immediate HTTP peer is the one in the PROXY header: loopback, the real TCP peer
    and trusted by default, no longer vouches for X-Forwarded-For."""
    xff = GET.replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n")
    server = servers("on", start_method)
    assert environ_of(exchange(server, V1 + xff))["REMOTE_ADDR"] == "192.0.2.7"
    assert environ_of(exchange(server, V2_LOCAL + xff))["REMOTE_ADDR"] == "203.0.113.5"
    trusting = servers("xff", start_method)
    named_trusted = b"PROXY TCP4 127.0.0.3 198.51.100.1 5000 443\r\n"
    assert environ_of(exchange(trusting, named_trusted + xff))["REMOTE_ADDR"] == "203.0.113.5"


def test_the_header_must_come_within_the_header_timeout(servers, start_method):
    server = servers("slow", start_method)
    for data in (b"", V1[:10], V1):  # nothing, part of the header, the header but no request
        with socket.create_connection(("127.0.0.1", server.port), DEADLINE) as sock:
            sock.sendall(data)
            assert read_until_close(sock) == b""  # closed by the server, not by our timeout


def test_bad_proxy_allow_ips_is_one_line_exit_2(tmp_path):
    result = subprocess.run([SHAREDSOCK, "--bind", "127.0.0.1:0", "--proxy-protocol",
                             "--proxy-allow-ips", "127.0.0.1,nope", "testapp:app"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=DEADLINE)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--proxy-allow-ips" in lines[0] and "'nope'" in lines[0], result.stderr


# -- real HAProxy ------------------------------------------------------------------------------

HAPROXY_CONF = """
global
    pidfile {d}/haproxy.pid
    stats socket {d}/stats.sock
defaults
    mode tcp
    timeout connect 10s
    timeout client 30s
    timeout server 30s
frontend edge
    bind 127.0.0.1:{port}
    default_backend app
backend app
    option httpchk GET /environ/check-{send}
    server s1 {upstream} {send} check inter 300ms check-send-proxy
"""


def haproxy_binary() -> str:
    return debian_binary("haproxy", "haproxy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HAProxy:
    """HAProxy in the foreground (-db) in its own session; its frontend port is picked free
    and picked again should another process take it before HAProxy binds it."""

    def __init__(self, binary: str, directory: Path, upstream: str, send: str) -> None:
        self.directory = directory
        for _ in range(5):
            self.port = free_port()
            conf = directory / "haproxy.cfg"
            conf.write_text(HAPROXY_CONF.format(d=directory, port=self.port, upstream=upstream, send=send))
            self.log_path = directory / "haproxy.log"
            with open(self.log_path, "wb") as out:
                self.proc = subprocess.Popen([binary, "-db", "-f", str(conf)], stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            try:
                wait_for(self._listening, message="haproxy to listen")
                return
            except _BindFailed:
                self.stop()
            except BaseException:
                print(self.log())
                self.stop()
                raise
        raise AssertionError(f"haproxy never got a free port:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            if "Address already in use" in self.log() or "cannot bind" in self.log():
                raise _BindFailed
            raise AssertionError(f"haproxy exited with {self.proc.returncode}:\n{self.log()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), 2).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        stop_process_group(self.proc)


class _BindFailed(Exception):
    pass


@pytest.mark.parametrize("send", ["send-proxy", "send-proxy-v2"])
def test_behind_real_haproxy(servers, start_method, tmp_path, send):
    server = servers("on", start_method)
    check = rf'127\.0\.0\.1 - - \[[^]]*\] "GET /environ/check-{send} [^"]*" 200'
    haproxy = HAProxy(haproxy_binary(), tmp_path, f"127.0.0.1:{server.port}", send)
    try:
        # HAProxy's health checks send a v2 header with the LOCAL command (v1: the check's own
        # addresses): either way the app sees HAProxy, on loopback. The first marks the server up.
        server.wait_log(check)
        with socket.create_connection(("127.0.0.1", haproxy.port), DEADLINE,
                                      source_address=("127.0.0.2", 0)) as sock:
            client_port = sock.getsockname()[1]
            sock.sendall(GET)
            environ = environ_of(read_until_close(sock))
        assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("127.0.0.2", str(client_port))
    except BaseException:
        print(haproxy.log())
        raise
    finally:
        haproxy.stop()
