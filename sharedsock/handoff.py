"""The boot message a spawned worker receives: framed JSON with the listening sockets
attached as SCM_RIGHTS ancillary data (what Node.js does for
``child.send('server', server)``). Everything after it goes through ``channel``.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any

from .errors import SharedsockError

_LENGTH = struct.Struct("!I")
MAX_BOOT_MESSAGE = 64 << 20


class HandoffError(SharedsockError):
    """The worker did not receive its sockets or boot message intact."""


def send_boot(sock: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
    payload = json.dumps(message).encode("utf-8")
    frame = _LENGTH.pack(len(payload)) + payload
    # The fds ride on the first sendmsg; it always carries at least the length prefix.
    sent = socket.send_fds(sock, [frame], fds)
    if sent < len(frame):
        sock.sendall(frame[sent:])


def receive_boot(sock: socket.socket, expected_fds: int | None = None) -> tuple[dict[str, Any], list[int]]:
    """Read the boot message and its fds; every way it can go wrong is a HandoffError."""
    sock.setblocking(True)
    maxfds = 64
    data, fds, flags, _ = socket.recv_fds(sock, 65536, maxfds)
    if flags & getattr(socket, "MSG_CTRUNC", 0):
        _close_all(fds)
        raise HandoffError("ancillary data was truncated: listening sockets were lost in transit")
    if len(data) < _LENGTH.size:
        _close_all(fds)
        raise HandoffError("the master closed the channel before sending the boot message")
    (length,) = _LENGTH.unpack_from(data)
    if length > MAX_BOOT_MESSAGE:
        _close_all(fds)
        raise HandoffError(f"boot message of {length} bytes is too large")
    body = bytearray(data[_LENGTH.size:])
    while len(body) < length:
        more = sock.recv(min(1 << 20, length - len(body)))
        if not more:
            _close_all(fds)
            raise HandoffError("the boot message was cut short")
        body += more
    message = json.loads(bytes(body))
    wanted = message.get("fd_count") if expected_fds is None else expected_fds
    if wanted is not None and len(fds) != wanted:
        _close_all(fds)
        raise HandoffError(f"expected {wanted} listening sockets, received {len(fds)}")
    return message, fds


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
