"""TLS: real servers, real TLS clients (the ssl module and curl), certificates made at test time."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest
from tls_certs import KEY_PASSWORD, make_certs

from conftest import APPS, DEADLINE, SHAREDSOCK, ResponseReader, parse_response, read_until_close, wait_for

APP = "tls_app:app"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def urls(server) -> list[str]:
    return re.findall(r"Listening at: (\S+)", server.log())


def address(url: str) -> tuple[str, int]:
    host, _, port = url.split("://", 1)[1].rpartition(":")
    return host.strip("[]"), int(port)


def tls_connect(url: str, context: ssl.SSLContext, timeout: float = DEADLINE) -> ssl.SSLSocket:
    raw = socket.create_connection(address(url), timeout=timeout)
    return context.wrap_socket(raw, server_hostname="localhost")


def request(path: str = "/", close: bool = True, body: bytes = b"") -> bytes:
    method = "POST" if body else "GET"
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


def https_get(url: str, context: ssl.SSLContext, path: str = "/") -> tuple[int, dict, bytes]:
    with tls_connect(url, context) as sock:
        sock.sendall(request(path))
        return parse_response(read_until_close(sock))


def plain_get(url: str, path: str = "/") -> tuple[int, dict, bytes]:
    with socket.create_connection(address(url), timeout=DEADLINE) as sock:
        sock.sendall(request(path))
        return parse_response(read_until_close(sock))


def tls_args(certs, *extra: str) -> list[str]:
    return ["--certfile", str(certs.server), "--keyfile", str(certs.server_key), *extra]


def app_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHAREDSOCK_")}
    return {**env, "PYTHONPATH": str(APPS)}


def no_tracebacks(server) -> None:
    assert "Traceback" not in server.log(), server.log()


# -- serving ------------------------------------------------------------------------------------


def test_https_and_plain_http_side_by_side(start_server, certs, start_method):
    """https:// addresses are TLS, http:// ones plain; bodies, file wrappers and large responses
    cross TLS intact; keep-alive works over TLS."""
    server = start_server(tls_args(certs, "--bind", "https://127.0.0.1:0", "--bind", "http://127.0.0.1:0",
                                   "--start-method", start_method, APP))
    server.wait_log(r"Listening at: http://", timeout=DEADLINE)
    https, http = urls(server)
    assert https.startswith("https://") and http.startswith("http://")
    context = certs.client_context()

    status, _, body = https_get(https, context)
    seen = json.loads(body)
    assert status == 200 and seen["wsgi.url_scheme"] == "https" and seen["HTTPS"] == "on"
    assert seen["SERVER_PORT"] == str(address(https)[1]) and seen["SSL_CLIENT_S_DN"] is None
    status, _, body = plain_get(http)
    assert status == 200 and json.loads(body)["wsgi.url_scheme"] == "http"

    with tls_connect(https, context) as sock:
        assert sock.selected_alpn_protocol() is None  # this client offered none
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        reader = ResponseReader(sock)
        payload = bytes(range(256)) * 1000
        sock.sendall(request("/echo", close=False, body=payload))
        assert reader.next()[2] == payload
        sock.sendall(request("/file?300001", close=False))
        status, headers, data = reader.next()
        assert status == 200 and len(data) == 300001  # sendfile cannot cross TLS: read and sent
        sock.sendall(request("/big?3000000", close=False))
        assert reader.next()[2] == b"y" * 3000000
        sock.sendall(request("/", close=False) + request("/"))  # pipelined, then closed
        assert reader.next()[0] == 200 and reader.next()[0] == 200
        assert reader.closed()
    plain_file = plain_get(http, "/file?300001")[2]
    assert hashlib.sha256(plain_file).digest() == hashlib.sha256(data).digest()
    no_tracebacks(server)


def test_certfile_makes_unmarked_addresses_tls_and_curl_reuses_the_connection(start_server, certs):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    server = start_server(tls_args(certs, "--bind", "127.0.0.1:0", APP))
    (url,) = urls(server)
    assert url.startswith("https://")
    port = address(url)[1]
    target = f"https://localhost:{port}/"
    result = subprocess.run([curl, "-sS", "-v", "--cacert", str(certs.ca), "--resolve",
                             f"localhost:{port}:127.0.0.1", target, target], capture_output=True,
                            text=True, timeout=DEADLINE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"wsgi.url_scheme": "https"') == 2
    assert "Re-using existing connection" in result.stderr  # keep-alive over TLS
    assert "ALPN: server accepted http/1.1" in result.stderr
    no_tracebacks(server)


def test_alpn_and_minimum_version(start_server, certs):
    server = start_server(tls_args(certs, "--bind", "127.0.0.1:0", "--ssl-min-version", "TLSv1.3", APP))
    (url,) = urls(server)
    context = certs.client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    with tls_connect(url, context) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1" and sock.version() == "TLSv1.3"
    old = certs.client_context()
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises((ssl.SSLError, ConnectionError)):
        with tls_connect(url, old) as sock:
            sock.sendall(request())
            sock.recv(1)
    assert https_get(url, context)[0] == 200  # the worker carries on
    no_tracebacks(server)


# -- the handshake: in the selector, bounded, never fatal -------------------------------------------


def client_hello(certs) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO, bytes]:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = certs.client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return obj, incoming, outgoing, outgoing.read()


def finish_handshake(sock: socket.socket, obj, incoming, outgoing) -> None:
    while True:
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            data = sock.recv(65536)
            assert data, "the server closed during the handshake"
            incoming.write(data)
            continue
        sock.sendall(outgoing.read())
        return


def test_silent_and_slow_handshakes_hold_no_thread(start_server, certs, start_method):
    """One worker, one thread: clients stuck in their handshake do not delay another client, are
    closed at --header-timeout, and a handshake that arrives in slow pieces completes."""
    server = start_server(tls_args(certs, "--bind", "127.0.0.1:0", "--header-timeout", "2",
                                   "--workers", "1", "--threads", "1", "--start-method", start_method, "--log-level", "debug",
                                   APP))
    (url,) = urls(server)
    context = certs.client_context()
    silent = socket.create_connection(address(url), timeout=DEADLINE)
    _, _, _, hello = client_hello(certs)
    half = socket.create_connection(address(url), timeout=DEADLINE)
    half.sendall(hello[: len(hello) // 2])

    obj, incoming, outgoing, hello = client_hello(certs)
    slow = socket.create_connection(address(url), timeout=DEADLINE)
    slow.sendall(hello[:5])  # the record header alone, then the rest after other clients were served

    assert https_get(url, context)[0] == 200
    slow.sendall(hello[5:])
    incoming.write(slow.recv(65536))
    finish_handshake(slow, obj, incoming, outgoing)
    obj.write(request())
    slow.sendall(outgoing.read())
    answer = b""
    while b"pid" not in answer:
        data = slow.recv(65536)
        assert data
        incoming.write(data)
        try:
            answer += obj.read(65536)
        except ssl.SSLWantReadError:
            pass
    assert answer.startswith(b"HTTP/1.1 200")

    for sock in (silent, half):  # closed by the server at --header-timeout, without an answer
        assert read_until_close(sock) == b""
        sock.close()
    slow.close()
    server.wait_log(r"no handshake within --header-timeout", count=2)
    assert https_get(url, context)[0] == 200
    no_tracebacks(server)


def test_plain_http_on_a_tls_address_is_told_and_closed_cleanly(start_server, certs):
    server = start_server(tls_args(certs, "--bind", "127.0.0.1:0", "--workers", "1", APP))
    (url,) = urls(server)
    pid = json.loads(https_get(url, certs.client_context())[2])["pid"]
    with socket.create_connection(address(url), timeout=DEADLINE) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        chunks = []
        while True:
            data = sock.recv(65536)  # a reset would raise here: the close must be clean
            if not data:
                break
            chunks.append(data)
    status, headers, body = parse_response(b"".join(chunks))
    assert status == 400 and headers["connection"] == "close" and b"https://" in body
    assert json.loads(https_get(url, certs.client_context())[2])["pid"] == pid  # same worker, serving
    no_tracebacks(server)


def test_failed_handshakes_cost_one_connection(start_server, certs, start_method):
    """Garbage, a client that refuses our certificate, a client that vanishes mid-handshake:
    each costs its connection, logs no traceback, and the worker serves the next client."""
    server = start_server(tls_args(certs, "--bind", "127.0.0.1:0", "--workers", "1", "--start-method",
                                   start_method, "--log-level", "debug", APP))
    (url,) = urls(server)
    context = certs.client_context()
    pid = json.loads(https_get(url, context)[2])["pid"]
    with socket.create_connection(address(url), timeout=DEADLINE) as sock:
        sock.sendall(b"\x16\x03\x01\x00\x05garbage that is not a ClientHello")
        read_until_close(sock)
    with socket.create_connection(address(url), timeout=DEADLINE) as sock:
        sock.sendall(b"\x00\x01\x02 binary junk")
        read_until_close(sock)
    distrustful = ssl.create_default_context(cafile=str(certs.dir / "other-ca.pem"))
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_connect(url, distrustful)
    _, _, _, hello = client_hello(certs)
    with socket.create_connection(address(url), timeout=DEADLINE) as sock:
        sock.sendall(hello)
        sock.recv(1)
    server.wait_log(r"closed TLS connection from 127\.0\.0\.1: TLS handshake failed", count=2)
    assert json.loads(https_get(url, context)[2])["pid"] == pid
    no_tracebacks(server)


# -- mutual TLS ---------------------------------------------------------------------------------


def test_client_certificates_required(start_server, certs, start_method):
    server = start_server(tls_args(certs, "--bind", "127.0.0.1:0", "--ca-certs", str(certs.ca),
                                   "--cert-reqs", "required", "--start-method", start_method, APP))
    (url,) = urls(server)
    status, _, body = https_get(url, certs.client_context(certs.client, certs.client_key))
    assert status == 200 and json.loads(body)["SSL_CLIENT_S_DN"] == "CN=alice,O=Example"

    for refused in (certs.client_context(), certs.client_context(certs.stranger, certs.stranger_key)):
        # TLS 1.3 clients finish their side before the server has checked their certificate,
        # so the refusal may come at the handshake or at the first read.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with tls_connect(url, refused) as sock:
                sock.sendall(request())
                assert sock.recv(65536) == b"", "served without an accepted certificate"
                raise ConnectionError("closed without an answer")
    server.wait_log(r"closed TLS connection from 127\.0\.0\.1: client certificate refused: the client sent none")
    server.wait_log(r"closed TLS connection from 127\.0\.0\.1: client certificate refused: (certificate "
                    r"verify failed|unable to get local issuer certificate)")
    assert https_get(url, certs.client_context(certs.client, certs.client_key))[0] == 200
    no_tracebacks(server)


def test_client_certificates_optional(start_server, certs):
    server = start_server(tls_args(certs, "--bind", "127.0.0.1:0", "--ca-certs", str(certs.ca),
                                   "--cert-reqs", "optional", APP))
    (url,) = urls(server)
    assert json.loads(https_get(url, certs.client_context())[2])["SSL_CLIENT_S_DN"] is None
    body = https_get(url, certs.client_context(certs.client, certs.client_key))[2]
    assert json.loads(body)["SSL_CLIENT_S_DN"] == "CN=alice,O=Example"


# -- PROXY protocol before TLS ------------------------------------------------------------------------


@pytest.mark.parametrize("together", [False, True], ids=["header-then-hello", "one-segment"])
def test_proxy_header_before_the_handshake(start_server, certs, together):
    server = start_server(tls_args(certs, "--bind", "127.0.0.1:0", "--proxy-protocol", APP))
    (url,) = urls(server)
    header = b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n"
    obj, incoming, outgoing, hello = client_hello(certs)
    with socket.create_connection(address(url), timeout=DEADLINE) as sock:
        if together:
            sock.sendall(header + hello)
        else:
            sock.sendall(header)
            time.sleep(0.05)  # a separate segment, so the header is read alone first
            sock.sendall(hello)
        incoming.write(sock.recv(65536))
        finish_handshake(sock, obj, incoming, outgoing)
        obj.write(request())
        sock.sendall(outgoing.read())
        answer = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            incoming.write(data)
            try:
                answer += obj.read(65536)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
    assert json.loads(parse_response(answer)[2])["REMOTE_ADDR"] == "203.0.113.7"
    no_tracebacks(server)


# -- closing -------------------------------------------------------------------------------------


def test_idle_keepalive_close_sends_close_notify(start_server, certs):
    """A kept-alive TLS connection closed at --keepalive ends with close_notify, not a bare FIN
    (a client that refuses ragged EOFs sees an orderly end)."""
    server = start_server(tls_args(certs, "--bind", "127.0.0.1:0", "--keepalive", "1", APP))
    (url,) = urls(server)
    raw = socket.create_connection(address(url), timeout=DEADLINE)
    with certs.client_context().wrap_socket(raw, server_hostname="localhost",
                                            suppress_ragged_eofs=False) as sock:
        reader = ResponseReader(sock)
        sock.sendall(request(close=False))
        assert reader.next()[0] == 200
        assert sock.recv(65536) == b""  # SSLEOFError here would mean no close_notify


# -- reload --------------------------------------------------------------------------------------


def served_subject(url: str, certs) -> str:
    with tls_connect(url, certs.client_context()) as sock:
        return dict(item[0] for item in sock.getpeercert()["subject"])["commonName"]


def test_sighup_loads_new_certificates_and_keeps_the_old_on_a_bad_file(start_server, certs, start_method,
                                                                        tmp_path):
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(certs.server, cert)
    shutil.copy(certs.server_key, key)
    server = start_server(["--certfile", str(cert), "--keyfile", str(key), "--bind", "127.0.0.1:0",
                           "--workers", "2", "--start-method", start_method, APP], workers=2)
    (url,) = urls(server)
    assert served_subject(url, certs) == "localhost"

    failures: list[BaseException] = []
    done = threading.Event()

    def keep_asking() -> None:
        while not done.is_set():
            try:
                assert https_get(url, certs.client_context())[0] == 200
            except BaseException as exc:
                failures.append(exc)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        shutil.copy(certs.renewed, cert)
        shutil.copy(certs.renewed_key, key)
        server.send(signal.SIGHUP)
        wait_for(lambda: served_subject(url, certs) == "renewed.localhost", message="the new certificate")
        server.wait_log(r"Booted worker \d+ \(generation 2\)", count=2)

        cert.write_text("not a certificate\n")
        server.send(signal.SIGHUP)
        server.wait_log(r"SIGHUP: not reloading, the TLS files do not load: --certfile .*live\.pem: "
                        r"no PEM certificate in it; the workers serving keep their certificate")
    finally:
        done.set()
        asker.join(DEADLINE)
    assert not failures, failures[:3]
    assert served_subject(url, certs) == "renewed.localhost"
    assert "generation 3" not in server.log()
    no_tracebacks(server)


# -- options -----------------------------------------------------------------------------------------


def test_encrypted_key_with_the_password_from_the_environment(start_server, certs):
    server = start_server(["--certfile", str(certs.server), "--keyfile", str(certs.server_key_encrypted),
                           "--bind", "127.0.0.1:0", APP], env={"SHAREDSOCK_KEYFILE_PASSWORD": KEY_PASSWORD})
    (url,) = urls(server)
    assert https_get(url, certs.client_context())[0] == 200


def test_print_config_hides_the_password(certs, tmp_path):
    result = subprocess.run([SHAREDSOCK, "--print-config", "--certfile", str(certs.server),
                             "--keyfile-password", "hunter2", APP], capture_output=True, text=True,
                            timeout=DEADLINE, cwd=tmp_path, env=app_env())
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    assert re.search(r"keyfile_password\s+= \(set\)", result.stdout)


BAD_OPTIONS = {
    "missing certfile": (["--certfile", "{dir}/nope.pem"], r"--certfile \S+nope\.pem: No such file or directory"),
    "certfile is no certificate": (["--certfile", "{dir}/ca.key"], r"--certfile \S+: no PEM certificate in it"),
    "certfile without keyfile": (["--certfile", "{dir}/server.pem"],
                                 r"--certfile \S+server\.pem holds no private key: give --keyfile"),
    "keyfile of another certificate": (["--certfile", "{dir}/server.pem", "--keyfile", "{dir}/renewed.key"],
                                       r"--keyfile \S+: the key does not match the certificate"),
    "encrypted key, no password": (["--certfile", "{dir}/server.pem", "--keyfile",
                                    "{dir}/server-encrypted.key"],
                                   r"the key is encrypted; give --keyfile-password"),
    "wrong password": (["--certfile", "{dir}/server.pem", "--keyfile", "{dir}/server-encrypted.key",
                        "--keyfile-password", "wrong"], r"--keyfile-password: wrong password for --keyfile"),
    "bad version": (["--certfile", "{dir}/server.pem", "--ssl-min-version", "SSLv3"],
                    r"--ssl-min-version: expected TLSv1\.2 or TLSv1\.3, got 'SSLv3'"),
    "bad cert-reqs": (["--certfile", "{dir}/server.pem", "--cert-reqs", "maybe"],
                      r"--cert-reqs: expected one of none, optional, required, got 'maybe'"),
    "cert-reqs without ca-certs": (["--certfile", "{dir}/server.pem", "--keyfile", "{dir}/server.key",
                                    "--cert-reqs", "required"], r"--cert-reqs required needs --ca-certs"),
    "missing ca-certs": (["--certfile", "{dir}/server.pem", "--keyfile", "{dir}/server.key",
                          "--ca-certs", "{dir}/nope.pem", "--cert-reqs", "optional"],
                         r"--ca-certs \S+nope\.pem: No such file or directory"),
    "bad ciphers": (["--certfile", "{dir}/server.pem", "--keyfile", "{dir}/server.key", "--ciphers", "NOPE"],
                    r"--ciphers 'NOPE': no cipher matches it"),
    "keyfile without certfile": (["--keyfile", "{dir}/server.key"], r"--keyfile needs --certfile"),
    "https bind without certfile": (["--bind", "https://127.0.0.1:0"],
                                    r"--bind https://127\.0\.0\.1:0: an https:// address needs --certfile"),
    "https metrics address": (["--metrics-bind", "https://127.0.0.1:0"],
                              r"--metrics-bind https://127\.0\.0\.1:0: the health and metrics address speaks plain"),
    "https bind with a unix path": (["--certfile", "{dir}/server.pem", "--keyfile", "{dir}/server.key",
                                     "--bind", "https://unix:/tmp/x.sock"],
                                    r"--bind https://unix:/tmp/x\.sock: expected https://HOST:PORT"),
}


@pytest.mark.parametrize("case", sorted(BAD_OPTIONS))
def test_bad_tls_options_are_one_line_and_exit_2(certs, tmp_path, case):
    args, expected = BAD_OPTIONS[case]
    args = [a.format(dir=certs.dir) for a in args]
    result = subprocess.run([SHAREDSOCK, *args, "--bind", "127.0.0.1:0", APP], capture_output=True,
                            text=True, timeout=DEADLINE, cwd=tmp_path, stdin=subprocess.DEVNULL,
                            env=app_env())
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(expected, lines[0]), result.stderr
    assert "Listening" not in result.stdout + result.stderr


def test_pool_threads_and_a_unix_socket(start_server, certs, tmp_path, start_method):
    """With every pool thread busy, the next client is taken by the first thread to finish,
    which leaves its handshake to the selector; TLS works over a unix socket too."""
    import tempfile

    path = f"{tempfile.mkdtemp(prefix='ss-')}/tls.sock"
    server = start_server(tls_args(certs, "--bind", "127.0.0.1:0", "--bind", f"unix:{path}", "--threads", "2",
                                   "--workers", "1", "--start-method", start_method, APP))
    url = urls(server)[0]
    context = certs.client_context()
    results: list[int] = []

    def slow() -> None:
        results.append(https_get(url, context, "/sleep?1")[0])

    sleepers = [threading.Thread(target=slow) for _ in range(2)]
    for thread in sleepers:
        thread.start()
    server.wait_log(r"sleep started", count=2)  # both threads busy: the next client waits for one
    statuses = [https_get(url, context)[0] for _ in range(3)]
    for thread in sleepers:
        thread.join(DEADLINE)
    assert statuses == [200, 200, 200] and results == [200, 200]

    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(DEADLINE)
    raw.connect(path)
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(request())
        status, _, body = parse_response(read_until_close(sock))
    assert status == 200 and json.loads(body)["wsgi.url_scheme"] == "https"
    no_tracebacks(server)


def test_drain_closes_kept_alive_tls_connections_cleanly(start_server, certs):
    server = start_server(tls_args(certs, "--bind", "127.0.0.1:0", APP))
    (url,) = urls(server)
    raw = socket.create_connection(address(url), timeout=DEADLINE)
    with certs.client_context().wrap_socket(raw, server_hostname="localhost",
                                            suppress_ragged_eofs=False) as sock:
        reader = ResponseReader(sock)
        sock.sendall(request(close=False))
        assert reader.next()[0] == 200
        server.send(signal.SIGTERM)
        assert sock.recv(65536) == b""  # close_notify, then the close
    assert server.wait_exit() == 0
    no_tracebacks(server)


def test_records_read_together_are_all_served(start_server, certs):
    """Two requests in two TLS records that arrive in one segment: both are decrypted at once, so
    the second never waits inside the TLS layer while the socket looks quiet."""
    server = start_server(tls_args(certs, "--bind", "127.0.0.1:0", "--keepalive", "30", APP))
    (url,) = urls(server)
    obj, incoming, outgoing, hello = client_hello(certs)
    with socket.create_connection(address(url), timeout=DEADLINE) as sock:
        sock.sendall(hello)
        incoming.write(sock.recv(65536))
        finish_handshake(sock, obj, incoming, outgoing)
        obj.write(request("/", close=False))
        obj.write(request("/echo", close=False, body=b"second"))
        sock.sendall(outgoing.read())
        answer = b""
        while answer.count(b"HTTP/1.1 200") < 2 or not answer.endswith(b"second"):
            data = sock.recv(65536)
            assert data, f"closed after {answer!r}"
            incoming.write(data)
            try:
                while True:
                    answer += obj.read(65536)
            except ssl.SSLWantReadError:
                pass


@pytest.mark.parametrize(("text", "host", "port", "tls"), [
    ("https://0.0.0.0:8443", "0.0.0.0", 8443, True),
    ("https://example.org", "example.org", 443, True),
    ("HTTPS://[::1]", "::1", 443, True),
    ("http://[::1]:8080/", "::1", 8080, False),
    ("http://localhost", "localhost", 80, False),
    ("127.0.0.1:8000", "127.0.0.1", 8000, None),
])
def test_bind_schemes(text, host, port, tls):
    from sharedsock.listeners import parse_bind

    spec = parse_bind(text)
    assert (spec.kind, spec.host, spec.port, spec.tls) == ("tcp", host, port, tls)


def test_once_an_address_says_https_the_others_are_plain(start_server, certs):
    server = start_server(tls_args(certs, "--bind", "https://127.0.0.1:0", "--bind", "127.0.0.1:0", APP))
    server.wait_log(r"Listening at: http://")
    https, http = urls(server)
    assert https.startswith("https://") and http.startswith("http://")
    assert json.loads(plain_get(http)[2])["wsgi.url_scheme"] == "http"
    assert json.loads(https_get(https, certs.client_context())[2])["wsgi.url_scheme"] == "https"


def test_refusals_and_head_timeouts_are_answered_over_tls(start_server, certs):
    """The server's own answers (400 for a bad request, 408 for a head that stops) are encrypted
    like any response, and the connection then ends with close_notify."""
    server = start_server(tls_args(certs, "--bind", "127.0.0.1:0", "--header-timeout", "1", APP))
    (url,) = urls(server)
    context = certs.client_context()
    for data, status in ((b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
                         (b"GET / HTTP/1.1\r\nHost: x\r\n", 408)):
        raw = socket.create_connection(address(url), timeout=DEADLINE)
        with context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as sock:
            sock.sendall(data)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        assert parse_response(b"".join(chunks))[0] == status
    no_tracebacks(server)
