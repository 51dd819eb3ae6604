"""PEP 3333 pieces: the environ, ``wsgi.input`` and ``wsgi.file_wrapper``.

The environ is built from a per-connection template so that per request only
the values that change are written. ``wsgi.input`` pulls body bytes from the
connection on demand, so a body is never held in memory beyond one read.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from typing import Callable, Iterator
from urllib.parse import unquote_to_bytes

from .http.parser import RequestHead
from .proxy import split_host

_HEADER_KEYS: dict[bytes, str | None] = {}
_SPECIAL = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}


def _environ_key(name: bytes) -> str | None:
    """``X-Foo`` -> ``HTTP_X_FOO``; None for names with ``_`` (they could pose as ``-``)."""
    key = _HEADER_KEYS.get(name)
    if key is None and name not in _HEADER_KEYS:
        lname = name.lower()
        if b"_" in name:
            key = None
        elif lname in _SPECIAL:
            key = _SPECIAL[lname]
        else:
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        if len(_HEADER_KEYS) > 2048:
            _HEADER_KEYS.clear()
        _HEADER_KEYS[name] = key
    return key


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Path and query of a request target in origin or absolute form."""
    if target[:1] != b"/":
        if target == b"*":
            return b"*", b""
        scheme_end = target.find(b"://")
        if scheme_end != -1:
            path_start = target.find(b"/", scheme_end + 3)
            query_start = target.find(b"?", scheme_end + 3)
            if path_start == -1 or (query_start != -1 and query_start < path_start):
                target = b"/" + (target[query_start:] if query_start != -1 else b"")
            else:
                target = target[path_start:]
    path, _, query = target.partition(b"?")
    fragment = path.find(b"#")
    if fragment != -1:
        path = path[:fragment]
    query, _, _ = query.partition(b"#")
    return path, query


def build_environ(head: RequestHead, base: dict, root_path: str) -> dict:
    """The environ for one request; ``base`` holds the per-connection constants."""
    environ = base.copy()
    path, query = split_target(head.target)
    if b"%" in path:
        path = unquote_to_bytes(path)
    path_info = path.decode("latin-1")
    if root_path:
        if path_info == root_path or path_info.startswith(root_path + "/"):
            path_info = path_info[len(root_path):]
    raw = head.target.decode("latin-1")
    environ["REQUEST_METHOD"] = head.method
    environ["PATH_INFO"] = path_info
    environ["QUERY_STRING"] = query.decode("latin-1")
    environ["RAW_URI"] = raw
    environ["REQUEST_URI"] = raw
    environ["SERVER_PROTOCOL"] = "HTTP/" + head.version
    for name, value in head.headers:
        key = _environ_key(name)
        if key is None:
            continue
        text = value.decode("latin-1")
        if key in environ and key.startswith("HTTP_"):
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ", ") + text
        environ[key] = text
    host = environ.get("HTTP_HOST")
    if host:
        environ["SERVER_NAME"] = split_host(host)[0]
    return environ


class InputStream(io.RawIOBase):
    """``wsgi.input``: reads pull from ``next_chunk`` (``b""`` at the end of the body)."""

    def __init__(self, next_chunk: Callable[[], bytes]) -> None:
        super().__init__()
        self._next_chunk = next_chunk
        self._buffer = b""
        self._eof = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> bool:
        if self._eof:
            return False
        data = self._next_chunk()
        if not data:
            self._eof = True
            return False
        self._buffer = self._buffer + data if self._buffer else data
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._buffer]
            self._buffer = b""
            while not self._eof:
                data = self._next_chunk()
                if not data:
                    self._eof = True
                    break
                parts.append(data)
            return b"".join(parts)
        while len(self._buffer) < size and self._fill():
            pass
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        while True:
            end = self._buffer.find(b"\n")
            if end != -1:
                cut = end + 1
                break
            if 0 <= limit <= len(self._buffer) or not self._fill():
                cut = len(self._buffer)
                break
        if 0 <= limit < cut:
            cut = limit
        line, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return line

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines, total = [], 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self) -> None:
        """Apps may close wsgi.input; the connection still owns and drains the body."""


class FileWrapper:
    """``wsgi.file_wrapper``: iterates blocks, and lets the server use ``os.sendfile``."""

    def __init__(self, filelike, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            data = read(self.blksize)
            if not data:
                return
            yield data

    def sendfile_span(self) -> tuple[int, int, int] | None:
        """``(fd, offset, length)`` when the wrapped object is a regular file, else None."""
        try:
            fd = self.filelike.fileno()
            st = os.fstat(fd)
        except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        try:
            offset = self.filelike.tell()
        except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        return fd, offset, max(0, st.st_size - offset)


def base_environ(server_name: str, server_port: str, remote_addr: str, remote_port: str,
                 multithread: bool, multiprocess: bool, errors=None) -> dict:
    return {
        "SCRIPT_NAME": "",
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "REMOTE_ADDR": remote_addr,
        "REMOTE_PORT": remote_port,
        "SERVER_SOFTWARE": "sharedsock",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": errors if errors is not None else sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
    }
