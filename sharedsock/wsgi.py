"""PEP 3333 pieces: the environ, ``wsgi.input`` and ``wsgi.file_wrapper``.

The environ is built from a per-listener template so that per request only
the values that change are written. ``wsgi.input`` pulls body bytes from the
connection on demand, so a body is never held in memory beyond one read.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote_to_bytes

from .http.parser import RequestHead
from .logs import log
from .proxy import split_host
from .speedups import compiled as _speedups

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


def split_target(target: bytes) -> tuple[bytes, bytes, bytes]:
    """Path, query and authority (empty unless absolute-form) of a request target."""
    authority = b""
    if target[:1] != b"/":
        if target == b"*":
            return b"", b"", b""
        scheme_end = target.find(b"://")
        if scheme_end != -1:
            rest = target[scheme_end + 3:]
            end = len(rest)
            for sep in (b"/", b"?", b"#"):
                at = rest.find(sep)
                if at != -1 and at < end:
                    end = at
            authority = rest[:end].rpartition(b"@")[2]
            target = rest[end:]
            if target[:1] != b"/":
                target = b"/" + target
    path, _, query = target.partition(b"?")
    fragment = path.find(b"#")
    if fragment != -1:
        path = path[:fragment]
    query, _, _ = query.partition(b"#")
    return path, query, authority


_MISSING: Any = object()
_SERVER_NAMES: dict[str, str] = {}  # Host header -> SERVER_NAME; a server sees few hosts


def build_environ(head: RequestHead, base: dict, remote_addr: str, remote_port: str,
                  root_path: str) -> dict:
    """The environ for one request; ``base`` holds the listener's constants (``base_environ``)."""
    environ = base.copy()
    environ["REMOTE_ADDR"] = remote_addr
    environ["REMOTE_PORT"] = remote_port
    target = head.target
    if target[:1] == b"/" and b"#" not in target:  # origin form: nearly every request
        path, _, query = target.partition(b"?")
        authority = b""
    else:
        path, query, authority = split_target(target)
    if b"%" in path:
        path = unquote_to_bytes(path)
    path_info = path.decode("latin-1")  # PEP 3333: bytes carried in a latin-1 str
    if root_path:
        if path_info == root_path or path_info.startswith(root_path + "/"):
            path_info = path_info[len(root_path):]
    raw = target.decode("latin-1")
    environ["REQUEST_METHOD"] = head.method
    environ["PATH_INFO"] = path_info
    environ["QUERY_STRING"] = query.decode("latin-1")
    environ["RAW_URI"] = raw
    environ["REQUEST_URI"] = raw
    environ["SERVER_PROTOCOL"] = "HTTP/" + head.version
    keys = _HEADER_KEYS
    for name, value in head.headers:
        key = keys.get(name, _MISSING)
        if key is _MISSING:
            key = _environ_key(name)
        if key is None:
            continue
        text = value.decode("latin-1")
        if key in environ and key[0] == "H":
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ", ") + text
        environ[key] = text
    if authority:
        # RFC 9112 3.2.2: the target's authority wins over the Host header.
        environ["HTTP_HOST"] = authority.decode("latin-1")
    host = environ.get("HTTP_HOST")
    if host:
        server_name = _SERVER_NAMES.get(host)
        environ["SERVER_NAME"] = _server_name(host) if server_name is None else server_name
    return environ


def _server_name(host: str) -> str:
    """SERVER_NAME for a Host value, remembered in _SERVER_NAMES."""
    if len(_SERVER_NAMES) > 1024:
        _SERVER_NAMES.clear()
    name = _SERVER_NAMES[host] = split_host(host)[0]
    return name


python_build_environ = build_environ  # the definition; the tests compare the C one with it

if _speedups is not None:
    # The same function in C for origin-form targets; it calls the one above for the rest,
    # and shares the two caches and the helpers that fill them.
    _speedups.environ_setup(_HEADER_KEYS, _environ_key, _SERVER_NAMES, _server_name,
                            python_build_environ)
    build_environ = _speedups.build_environ


class InputStream(io.RawIOBase):
    """``wsgi.input``: reads pull from ``next_chunk`` (``b""`` at the end of the body).

    At most one received chunk is held at a time; a read position into it
    avoids copying the rest of the chunk on every small read. A chunk may be a
    memoryview of the received bytes (a large body arriving with its head): a
    read copies out of it once, into the bytes it returns.
    """

    def __init__(self, next_chunk: Callable[[], bytes | memoryview]) -> None:
        super().__init__()
        self._next_chunk = next_chunk
        self._buffer: bytes | memoryview = b""
        self._pos = 0
        self._eof = False

    def readable(self) -> bool:
        return True

    def _refill(self) -> bool:
        """Replace the (fully read) buffer with the next chunk; False at the end of the body."""
        if self._eof:
            return False
        data = self._next_chunk()
        if not data:
            self._eof = True
            return False
        self._buffer = data
        self._pos = 0
        return True

    def read(self, size: int | None = -1) -> bytes:
        buf, pos = self._buffer, self._pos
        if size is not None and 0 <= size <= len(buf) - pos:
            self._pos = pos + size
            return bytes(buf[pos:pos + size]) if type(buf) is memoryview else buf[pos:pos + size]
        # Collect pieces and join once: growing one bytes object would copy it per chunk.
        parts = [buf[pos:]] if pos < len(buf) else []
        need = -1 if size is None or size < 0 else size - (len(buf) - pos)
        self._buffer, self._pos = b"", 0
        while need and self._refill():
            data = self._buffer
            if 0 <= need < len(data):
                parts.append(data[:need])
                self._pos = need
                break
            parts.append(data)
            self._buffer = b""
            if need > 0:
                need -= len(data)
        return b"".join(parts)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None or size < 0 else size
        parts: list[bytes] = []
        total = 0
        while limit < 0 or total < limit:
            buf, pos = self._buffer, self._pos
            if type(buf) is memoryview:  # lines are looked for in bytes
                buf = self._buffer = bytes(buf)
            end = buf.find(b"\n", pos)
            stop = len(buf) if end == -1 else end + 1
            if 0 <= limit < total + stop - pos:
                stop = pos + limit - total
            if stop > pos:
                parts.append(buf[pos:stop])
                total += stop - pos
                self._pos = stop
            if end != -1 and stop == end + 1:
                break
            if self._pos == len(buf) and not self._refill():
                break
        return b"".join(parts)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
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


class ReceivedBody(io.BytesIO):
    """``wsgi.input`` of a request whose whole body came before the app was called.

    BytesIO starts out sharing the bytes it is given, and reading all of them
    at once returns that very object, so the body is not copied again.
    """

    def close(self) -> None:
        """As with InputStream: closing does not end the body for whoever reads it next."""


class ErrorStream:
    """``wsgi.errors``: text written by the app goes to the server's error log stream."""

    def write(self, text: str) -> None:
        for handler in log.handlers:
            stream = getattr(handler, "stream", None)
            if stream is not None:
                handler.acquire()
                try:
                    stream.write(text)
                finally:
                    handler.release()
                return
        sys.stderr.write(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        for handler in log.handlers:
            handler.flush()
        if not log.handlers:
            sys.stderr.flush()


ERRORS = ErrorStream()


class EmptyInput:
    """``wsgi.input`` of a request without a body: one shared object, nothing to read or close."""

    __slots__ = ()

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        return b""

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def close(self) -> None:
        pass


EMPTY_INPUT = EmptyInput()


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


# Room in a base environ's table for a request's own keys (about eight, its headers,
# wsgi.input, and what the framework adds): each environ is a copy of the base, and a
# copy clones its table, so it takes them without growing.
_ENVIRON_ROOM = 28


def with_room(base: dict) -> dict:
    """``base`` with room for a request's keys, when the accelerator can make it so."""
    return base if _speedups is None else _speedups.roomy_dict(base, _ENVIRON_ROOM)


def base_environ(server_name: str, server_port: str, script_name: str,
                 multithread: bool, multiprocess: bool, errors=None) -> dict:
    """What every request through one listener shares; built once per listener and worker."""
    return with_room({
        "SCRIPT_NAME": script_name,
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "REMOTE_ADDR": "",
        "REMOTE_PORT": "",
        "SERVER_SOFTWARE": "sharedsock",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": errors if errors is not None else ERRORS,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
    })
