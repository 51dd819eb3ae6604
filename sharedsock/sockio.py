"""Timed reads and writes on non-blocking sockets.

Connection sockets stay non-blocking for their whole life so the worker's
selector can watch them; when a request is being served we wait for them with
``poll`` and a deadline instead of flipping blocking mode (two syscalls per
request saved, and no way to block forever on a client that stopped reading).
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
import termios
import time

# A head and a prefetched body of up to 64 KiB (exchange.PREFETCH_LIMIT) come in one read:
# splitting them cost a second pass through the protocol's events, and a join of the pieces.
READ_SIZE = 65536 + 16384


class ClientTimeout(Exception):
    """The client did not send or accept data within the allowed time.

    ``sent``: how many bytes of the interrupted write had reached the kernel.
    """

    def __init__(self, reason: str = "timed out") -> None:
        super().__init__(reason)
        self.reason = reason
        self.sent = 0


class ClientGone(Exception):
    """The client closed or reset the connection."""


_POLLIN = select.POLLIN | select.POLLPRI
_POLLOUT = select.POLLOUT
_POLLERR = select.POLLERR | select.POLLHUP | select.POLLNVAL
_OUTQ = getattr(termios, "TIOCOUTQ", None)  # == SIOCOUTQ on Linux, for TCP and unix sockets alike
_INT = struct.Struct("i")
_INT_ZERO = bytes(_INT.size)


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


def _unread(fd: int) -> int | None:
    """Bytes in the socket's send queue that the client has not taken yet (None: cannot tell)."""
    if _OUTQ is None:
        return None
    try:
        return _INT.unpack(fcntl.ioctl(fd, _OUTQ, _INT_ZERO))[0]
    except OSError:
        return None


def _wait_writable(fd: int, timeout: float, min_rate: int) -> None:
    """Wait for room in the send buffer while the client is still reading.

    Linux reports a socket writable only once a good part of its buffer, which
    can hold megabytes, is free again; a slow but steady reader can take longer
    than ``timeout`` to get there. So the reader is judged by how much of the
    queue it takes: in every ``timeout`` seconds of waiting it must take
    something, and at least ``min_rate`` bytes per second. Where the kernel
    cannot say (not Linux), one ``timeout`` without room is a stall.
    """
    poller = select.poll()
    poller.register(fd, _POLLOUT | _POLLERR)
    unread = _unread(fd)
    window_start = time.monotonic()
    while True:
        remaining = window_start + timeout - time.monotonic()
        if remaining > 0:
            if poller.poll(remaining * 1000.0):
                return
            continue
        now_unread = _unread(fd) if unread is not None else None
        if unread is None or now_unread is None:
            raise ClientTimeout(f"accepted nothing for {timeout:g}s")
        now = time.monotonic()
        window = now - window_start  # longer than timeout if this thread woke late: measure, not assume
        taken = unread - now_unread
        if taken <= 0:
            raise ClientTimeout(f"took nothing for {window:.1f}s")
        if taken < min_rate * window:
            raise ClientTimeout(f"took {taken} bytes in {window:.1f}s, under --min-body-rate {min_rate}")
        unread = now_unread
        window_start = now


def recv_some(sock: socket.socket, timeout: float) -> bytes:
    """Up to READ_SIZE bytes; ``b""`` means the client finished sending."""
    while True:
        try:
            return sock.recv(READ_SIZE)
        except BlockingIOError:
            _wait(sock.fileno(), _POLLIN, timeout)
        except OSError:  # reset, timed out by the kernel, or closed under us
            raise ClientGone() from None


def send_all(sock: socket.socket, data: bytes | memoryview, timeout: float, min_rate: int = 0) -> None:
    """Send everything or raise; the client is judged while the buffer is full (see _wait_writable).

    The first send is tried on the bytes themselves: it nearly always takes all of
    them, and a memoryview is made only when the kernel's buffer is full.
    """
    sent = 0
    try:
        try:
            sent = sock.send(data)
        except BlockingIOError:
            _wait_writable(sock.fileno(), timeout, min_rate)
        if sent == len(data):
            return
        view = memoryview(data)[sent:]
        while view:
            try:
                n = sock.send(view)
            except BlockingIOError:
                _wait_writable(sock.fileno(), timeout, min_rate)
                continue
            sent += n
            view = view[n:]
    except ClientTimeout as error:
        error.sent = sent
        raise
    except OSError:  # broken pipe, reset, aborted: the client is gone
        raise ClientGone() from None


def send_pair(sock: socket.socket, head: bytes, body: bytes, timeout: float, min_rate: int = 0) -> None:
    """``head`` then ``body`` with sendmsg, never joined (see ``send_all`` for the rest)."""
    sent = 0
    total = len(head) + len(body)
    parts: tuple[bytes | memoryview, ...]
    try:
        while sent < total:
            if sent < len(head):
                parts = (memoryview(head)[sent:], body) if sent else (head, body)
            else:
                parts = (memoryview(body)[sent - len(head):],)
            try:
                sent += sock.sendmsg(parts)
            except BlockingIOError:
                _wait_writable(sock.fileno(), timeout, min_rate)
    except ClientTimeout as error:
        error.sent = sent
        raise
    except OSError:
        raise ClientGone() from None


def send_file(sock: socket.socket, fd: int, offset: int, count: int, timeout: float,
              min_rate: int = 0) -> int:
    """Zero-copy ``count`` bytes of a regular file from ``offset``; returns bytes sent."""
    total = 0
    out = sock.fileno()
    while total < count:
        try:
            sent = os.sendfile(out, fd, offset + total, min(count - total, 1 << 30))
        except BlockingIOError:
            try:
                _wait_writable(out, timeout, min_rate)
            except ClientTimeout as error:
                error.sent = total
                raise
            continue
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            raise ClientGone() from None
        if sent == 0:
            break  # the file shrank under us
        total += sent
    return total
