"""What an app built in the master carries into forked workers that does not survive the fork.

A thread is not copied into the child; a network connection or an SQLite
database opened at import is copied, and then shared by every worker, whose
requests interleave on it and corrupt it. The master looks once, before the
first fork, and says what it found and what to do instead.
"""

from __future__ import annotations

import gc
import os
import socket
import sys
import threading
from dataclasses import dataclass

ADVICE = "open it in a post_fork hook (see the README's hooks section), or use --start-method spawn"


@dataclass(frozen=True)
class Finding:
    kind: str  # "thread", "connection", "sqlite"
    what: str


def find_unsafe(keep_fds: set[int]) -> list[Finding]:
    """Threads, connected sockets (Python's or a C library's) and SQLite connections;
    ``keep_fds`` are descriptors the server itself opened (listeners)."""
    findings = [Finding("thread", _describe_thread(t)) for t in threading.enumerate()
                if t is not threading.main_thread() and t.is_alive()]
    seen: set[str] = set()
    for fd in _socket_fds():
        if fd in keep_fds or fd <= 2:  # stdout may well be a socket (journald, a pipe-like pty)
            continue
        peer = _peer_of(fd)
        if peer is not None and peer not in seen:
            seen.add(peer)
            findings.append(Finding("connection", f"a connection to {peer}"))
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None:
        for obj in gc.get_objects():
            if isinstance(obj, sqlite3.Connection):
                path = _sqlite_path(obj)
                if path is not None:  # None: closed, harmless
                    findings.append(Finding("sqlite", f"the SQLite database {path}"))
    return findings


def describe(findings: list[Finding]) -> list[str]:
    """One line per kind, as the master logs them."""
    lines = []
    for kind, label in (("thread", "started threads, which do not survive fork into workers"),
                        ("connection", "opened network connections, which every forked worker "
                                       "would share"),
                        ("sqlite", "opened SQLite connections, which every forked worker would "
                                   "share")):
        items = [f.what for f in findings if f.kind == kind]
        if items:
            lines.append(f"fork safety: the app built in the master {label} ({', '.join(items)}): "
                         + ("start them in a post_fork hook" if kind == "thread" else ADVICE))
    return lines


def _describe_thread(thread: threading.Thread) -> str:
    target = getattr(thread, "_target", None)
    if target is not None:
        name = getattr(target, "__qualname__", repr(target))
        return f"{thread.name!r} running {getattr(target, '__module__', '?')}.{name}"
    return repr(thread.name)


def _socket_fds() -> list[int]:
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    fds = []
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                fds.append(int(name))
        except (OSError, ValueError):
            continue
    return fds


def _peer_of(fd: int) -> str | None:
    """``host:port`` (or a unix path) of a connected stream socket, else None."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return None
    try:
        if sock.type != socket.SOCK_STREAM:
            return None
        peer = sock.getpeername()
    except OSError:
        return None  # not connected: a listener, or a socket nobody uses yet
    finally:
        sock.close()
    if isinstance(peer, tuple):
        return f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
    return peer if isinstance(peer, str) and peer else None


def _sqlite_path(connection) -> str | None:
    try:
        rows = connection.execute("PRAGMA database_list").fetchall()
    except Exception as exc:
        return None if "closed" in str(exc) else "(path unknown)"
    paths = [row[2] for row in rows if row[1] == "main"]
    return paths[0] if paths and paths[0] else ":memory:"
