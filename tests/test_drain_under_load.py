"""Nothing lost: reloads, recycling and stops under constant keep-alive and new-connection load.

A draining worker used to close kept-alive connections it thought idle, while their
clients' next requests sat unread in the kernel's buffer: each such close reset a
request that had reached the server (about 2 per SIGHUP, thousands a minute with
--max-requests). Every response and every failure is counted here.
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from conftest import DEADLINE, ResponseReader, wait_for

REQUEST = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
REQUEST_CLOSE = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


class Load:
    """Keep-alive clients that reconnect only when told ``Connection: close``, and clients
    that open a new connection per request. Any request that gets no 200 is a failure."""

    def __init__(self, server, keepalive_clients: int = 4, new_connection_clients: int = 1) -> None:
        self.server = server
        self.ok = 0
        self.failures: list[str] = []
        self.refused = 0  # connects refused once the server stopped listening: never reached it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._keepalive_client, daemon=True)
                         for _ in range(keepalive_clients)]
        self._threads += [threading.Thread(target=self._new_connection_client, daemon=True)
                          for _ in range(new_connection_clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(DEADLINE)

    def _count(self, failure: str | None = None) -> None:
        with self._lock:
            if failure is None:
                self.ok += 1
            else:
                self.failures.append(failure)

    def _connect(self) -> socket.socket | None:
        try:
            return self.server.connect(timeout=DEADLINE)
        except ConnectionRefusedError:
            with self._lock:
                self.refused += 1
            return None

    def _keepalive_client(self) -> None:
        sock = reader = None
        sent_on = 0  # requests already answered on this connection
        while not self._stop.is_set():
            if sock is None:
                sock = self._connect()
                if sock is None:
                    return
                reader, sent_on = ResponseReader(sock), 0
            try:
                sock.sendall(REQUEST)
                status, headers, _ = reader.next()
            except (OSError, AssertionError) as exc:
                self._count(f"keep-alive request {sent_on + 1} on its connection: {exc!r}")
                sock.close()
                sock = None
                continue
            sent_on += 1
            self._count(None if status == 200 else f"status {status}")
            if headers.get("connection") == "close":
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    def _new_connection_client(self) -> None:
        while not self._stop.is_set():
            sock = self._connect()
            if sock is None:
                return
            try:
                sock.sendall(REQUEST_CLOSE)
                status, _, _ = ResponseReader(sock).next()
            except (OSError, AssertionError) as exc:
                self._count(f"new connection: {exc!r}")
            else:
                self._count(None if status == 200 else f"status {status}")
            finally:
                sock.close()

    def wait_for_requests(self, count: int) -> None:
        target = self.ok + count
        wait_for(lambda: self.ok >= target, message=f"{count} more responses")


def _args(method: str, *extra: str) -> list[str]:
    return ["--bind", "127.0.0.1:0", "--start-method", method, "--workers", "2",
            "--keepalive", "30", *extra, "testapp:app"]


def test_reloads_under_keepalive_load_lose_nothing(start_server, start_method):
    server = start_server(_args(start_method), workers=2)
    with Load(server) as load:
        load.wait_for_requests(100)
        for generation in range(2, 22):
            server.send(signal.SIGHUP)
            server.wait_log(rf"Booted worker \d+ \(generation {generation}\)", count=2,
                            timeout=DEADLINE * 2)
            load.wait_for_requests(50)
        load.stop()
    assert load.failures == [], f"{len(load.failures)} failed of {load.ok + len(load.failures)}: " \
                                f"{load.failures[:5]}"
    assert server.stop() == 0


def test_recycling_under_keepalive_load_loses_nothing(start_server, start_method):
    server = start_server(_args(start_method, "--max-requests", "50"), workers=2)
    with Load(server) as load:
        deadline = time.monotonic() + 10
        wait_for(lambda: time.monotonic() > deadline and len(server.booted_pids()) >= 8,
                 timeout=DEADLINE * 4, message="10 s and several recycled workers")
        load.stop()
    assert load.failures == [], f"{len(load.failures)} failed of {load.ok + len(load.failures)}: " \
                                f"{load.failures[:5]}"
    assert "asking to be replaced" in server.log()
    assert server.stop() == 0


@pytest.mark.parametrize("threads", ["1", "4"])
def test_stop_under_keepalive_load_answers_every_request_it_took(start_server, threads):
    server = start_server(_args("fork", "--threads", threads), workers=2)
    with Load(server, keepalive_clients=4, new_connection_clients=2) as load:
        load.wait_for_requests(200)
        server.send(signal.SIGTERM)
        assert server.wait_exit() == 0
        load.stop()
    assert load.failures == [], f"{len(load.failures)} failed of {load.ok + len(load.failures)}: " \
                                f"{load.failures[:5]}"
