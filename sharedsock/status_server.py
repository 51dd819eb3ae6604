"""The master's own small HTTP server (``--metrics-bind``): metrics, liveness and readiness.

It runs inside the master's loop, never in a worker, so it answers while every
worker is busy or stuck. Each connection carries one ``GET`` and is closed
after the answer; nothing it does can block the loop (non-blocking sockets, a
bounded request, a deadline per connection).
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable

from .listeners import Listener

MAX_REQUEST = 8192
DEADLINE = 5.0  # a scrape that has not sent its request line by then is dropped

Answer = tuple[int, str, bytes]  # status, content type, body
Handler = Callable[[str], Answer]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request",
            503: "Service Unavailable"}


class _Client:
    __slots__ = ("sock", "buffer", "out", "deadline")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.out = b""
        self.deadline = time.monotonic() + DEADLINE


class StatusServer:
    """Answers ``GET path`` with ``handler(path)``; registered in the master's selector."""

    def __init__(self, listeners: list[Listener], sel: selectors.BaseSelector,
                 handler: Handler) -> None:
        self.listeners = listeners
        self.sel = sel
        self.handler = handler
        self.clients: dict[int, _Client] = {}
        for listener in listeners:
            sel.register(listener.sock, selectors.EVENT_READ, self)

    def on_event(self, key: selectors.SelectorKey) -> None:
        if isinstance(key.fileobj, socket.socket) and key.fd not in self.clients:
            self._accept(key.fileobj)
            return
        client = self.clients.get(key.fd)
        if client is None:
            return
        if key.events & selectors.EVENT_WRITE and client.out:
            self._flush(client)
        else:
            self._read(client)

    def sweep(self, now: float) -> None:
        for client in [c for c in self.clients.values() if c.deadline <= now]:
            self._close(client)

    def pause(self) -> None:
        """Stop taking connections, and finish the ones taken: during an upgrade the new master
        answers on the same sockets, and a check half-answered here must not be cut."""
        for listener in self.listeners:
            try:
                self.sel.unregister(listener.sock)
            except (KeyError, ValueError):
                pass

    def resume(self) -> None:
        for listener in self.listeners:
            try:
                self.sel.register(listener.sock, selectors.EVENT_READ, self)
            except KeyError:
                pass  # already registered

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._close(client)
        for listener in self.listeners:
            try:
                self.sel.unregister(listener.sock)
            except (KeyError, ValueError):
                pass

    def _accept(self, sock: socket.socket) -> None:
        for _ in range(16):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError:
                return
            conn.setblocking(False)
            client = _Client(conn)
            self.clients[conn.fileno()] = client
            self.sel.register(conn, selectors.EVENT_READ, self)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(client)
            return
        client.buffer += data
        if b"\r\n\r\n" not in client.buffer and b"\n\n" not in client.buffer:
            if len(client.buffer) > MAX_REQUEST:
                self._answer(client, (400, "text/plain", b"request too large\n"))
            return
        line = client.buffer.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self._answer(client, (400, "text/plain", b"bad request\n"))
        elif parts[0] not in ("GET", "HEAD"):
            self._answer(client, (405, "text/plain", b"only GET\n"))
        else:
            status, ctype, body = self.handler(parts[1].split("?", 1)[0])
            self._answer(client, (status, ctype, b"" if parts[0] == "HEAD" else body),
                         length=len(body))

    def _answer(self, client: _Client, answer: Answer, length: int | None = None) -> None:
        status, ctype, body = answer
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body) if length is None else length}"
                "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n").encode("latin-1")
        client.out = head + body
        self._flush(client)

    def _flush(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(client)
            return
        client.out = client.out[sent:]
        if not client.out:
            try:
                client.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._close(client)
        else:
            self.sel.modify(client.sock, selectors.EVENT_WRITE, self)

    def _close(self, client: _Client) -> None:
        fd = client.sock.fileno()
        self.clients.pop(fd, None)
        try:
            self.sel.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        client.sock.close()
