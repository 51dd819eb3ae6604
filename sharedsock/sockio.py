"""Timed reads and writes on non-blocking sockets.

Connection sockets stay non-blocking for their whole life so the worker's
selector can watch them; when a request is being served we wait for them with
``poll`` and a deadline instead of flipping blocking mode (two syscalls per
request saved, and no way to block forever on a client that stopped reading).
"""

from __future__ import annotations

import os
import select
import socket
import time

READ_SIZE = 65536


class ClientTimeout(Exception):
    """The client did not send or accept data within the allowed time."""


class ClientGone(Exception):
    """The client closed or reset the connection."""


_POLLIN = select.POLLIN | select.POLLPRI
_POLLOUT = select.POLLOUT
_POLLERR = select.POLLERR | select.POLLHUP | select.POLLNVAL


def _wait(fd: int, events: int, timeout: float) -> None:
    poller = select.poll()
    poller.register(fd, events | _POLLERR)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ClientTimeout()
        if poller.poll(remaining * 1000.0):
            return


def recv_some(sock: socket.socket, timeout: float) -> bytes:
    """Up to READ_SIZE bytes; ``b""`` means the client finished sending."""
    while True:
        try:
            return sock.recv(READ_SIZE)
        except BlockingIOError:
            _wait(sock.fileno(), _POLLIN, timeout)
        except OSError:  # reset, timed out by the kernel, or closed under us
            raise ClientGone() from None


def send_all(sock: socket.socket, data: bytes | memoryview, timeout: float) -> None:
    """Send everything or raise; ``timeout`` bounds each stall, not the whole transfer.

    The first send is tried on the bytes themselves: it nearly always takes all of
    them, and a memoryview is made only when the kernel's buffer is full.
    """
    try:
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
            _wait(sock.fileno(), _POLLOUT, timeout)
        if sent == len(data):
            return
        view = memoryview(data)[sent:]
        while view:
            try:
                view = view[sock.send(view):]
            except BlockingIOError:
                _wait(sock.fileno(), _POLLOUT, timeout)
    except OSError:  # broken pipe, reset, aborted: the client is gone
        raise ClientGone() from None


def send_file(sock: socket.socket, fd: int, offset: int, count: int, timeout: float) -> int:
    """Zero-copy ``count`` bytes of a regular file from ``offset``; returns bytes sent."""
    total = 0
    out = sock.fileno()
    while total < count:
        try:
            sent = os.sendfile(out, fd, offset + total, min(count - total, 1 << 30))
        except BlockingIOError:
            _wait(out, _POLLOUT, timeout)
            continue
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            raise ClientGone() from None
        if sent == 0:
            break  # the file shrank under us
        total += sent
    return total
