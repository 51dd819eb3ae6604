"""The master-worker channel: what the two sides say to each other, and how a worker ends.

Both sides import this module and nothing of each other, so the master never
loads the request path. The channel is a socketpair carrying short
newline-terminated lines; a pipe, not a file, since a heartbeat that goes
through the filesystem stalls when the disk does.
"""

from __future__ import annotations

import json
import socket
from typing import Any

# Worker to master.
READY = "ready"  # payload {"pid": N}: serving
HEARTBEAT = "hb"  # payload: start (monotonic) of the oldest request in flight, 0 if none
RETIRE = "retire"  # --max-requests reached: start my replacement, then stop me
FILES = "files"  # payload {path: mtime}: modules loaded, for --reload
LOAD_ERROR = "loaderror"  # payload {"reason": str, "files": {path: mtime}}
STATS = "stats"  # payload: requeststats.RequestStats.report(), cumulative; about once a second

# Master to worker.
STOP = "stop"  # the whole server stops (not a reload): take the queued clients first

# How a worker process ends.
EXIT_OK = 0
EXIT_BOOT_FAILED = 3  # it never received its sockets
EXIT_APP_LOAD_FAILED = 4
EXIT_TIMED_OUT = 5  # the master's SIGABRT: stacks dumped, stuck requests answered 504


def control_pair() -> tuple[socket.socket, socket.socket]:
    """(master end, worker end); only the worker end is inheritable."""
    master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    worker_end.set_inheritable(True)
    return master_end, worker_end


class LineReader:
    """Splits a non-blocking stream into lines; the master keeps one per worker."""

    __slots__ = ("sock", "_buffer")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""

    def read_lines(self) -> tuple[list[str], bool]:
        """(complete lines, eof)."""
        eof = False
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    eof = True
                    break
                self._buffer += chunk
                if len(chunk) < 65536:
                    break
        except BlockingIOError:
            pass
        except OSError:
            eof = True
        *lines, self._buffer = self._buffer.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines], eof


def send_line(sock: socket.socket, kind: str, payload: Any = None, reliable: bool = False) -> bool:
    """Heartbeats are best effort (a worker must never block on a master that stopped
    reading); ``reliable`` lines (ready, errors, file lists) wait up to 10 s."""
    data = (kind if payload is None else f"{kind} {json.dumps(payload)}").encode("utf-8") + b"\n"
    try:
        if reliable:
            sock.settimeout(10.0)
            try:
                sock.sendall(data)
            finally:
                sock.setblocking(False)
        else:
            sock.send(data)
        return True
    except OSError:
        return False
