"""The error log (Python ``logging``) and the access log (one ``os.write`` per line).

Access lines never pass through ``logging``: a line per request is hot-path
work, and one ``write`` to an ``O_APPEND`` file keeps lines from several
workers and threads whole.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

ERROR_LOGGER = "sharedsock"
log = logging.getLogger(ERROR_LOGGER)

_FORMATS = {
    "combined": '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"',
    "common": '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s',
}


class _Formatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(record.created))


class _ReopenableHandler(logging.StreamHandler):
    """Writes to stderr or to a file that SIGUSR1 reopens (for logrotate)."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(sys.stderr if path == "-" else open(path, "a", encoding="utf-8"))

    def reopen(self) -> None:
        if self.path == "-":
            return
        self.acquire()
        try:
            old = self.stream
            self.stream = open(self.path, "a", encoding="utf-8")
            old.close()
        finally:
            self.release()


def setup_error_log(path: str, level: str) -> None:
    """Configure the ``sharedsock`` logger; raises OSError if the file cannot be opened."""
    handler = _ReopenableHandler(path)
    handler.setFormatter(_Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"))
    for old in list(log.handlers):
        log.removeHandler(old)
        if isinstance(old, _ReopenableHandler) and old.path != "-":
            old.close()
    log.addHandler(handler)
    log.setLevel(level.upper())
    log.propagate = False


def reopen_logs(access: AccessLog | None) -> None:
    for handler in log.handlers:
        if isinstance(handler, _ReopenableHandler):
            handler.reopen()
    if access is not None:
        access.reopen()


def _escape(text: str) -> str:
    """Request data as the bytes the client sent: the environ holds them decoded as latin-1
    (PEP 3333), so a non-ASCII character below 256 is one byte, written ``\\xNN`` (as nginx
    and Apache do) rather than re-encoded into mojibake."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif 32 <= code < 127:
            out.append(ch)
        else:
            out.append(f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}")
    return "".join(out)


class AccessRecord:
    """One finished request, as the access log sees it."""

    __slots__ = ("environ", "status", "response_headers", "sent", "duration")

    def __init__(self, environ: dict, status: str, response_headers: list[tuple[str, str]],
                 sent: int, duration: float) -> None:
        self.environ = environ
        self.status = status
        self.response_headers = response_headers
        self.sent = sent
        self.duration = duration


class _Atoms:
    """Lazy mapping from gunicorn-style atoms to values, so unused atoms cost nothing."""

    def __init__(self, rec: AccessRecord) -> None:
        self.rec = rec

    def __getitem__(self, key: str) -> str:
        rec, env = self.rec, self.rec.environ
        if key.startswith("{") and len(key) > 3 and key[-2] == "}":
            name, kind = key[1:-2], key[-1]
            if kind == "i":
                value = env.get("HTTP_" + name.upper().replace("-", "_"))
                if value is None and name.lower() in ("content-type", "content-length"):
                    value = env.get(name.upper().replace("-", "_"))
            elif kind == "o":
                lname = name.lower()
                value = next((v for n, v in rec.response_headers if n.lower() == lname), None)
            elif kind == "e":
                value = os.environ.get(name)
            else:
                raise KeyError(key)
            return "-" if value is None else _escape(value)
        if key == "h":
            return env.get("REMOTE_ADDR") or "-"
        if key == "l":
            return "-"
        if key == "u":
            return _escape(env["REMOTE_USER"]) if env.get("REMOTE_USER") else "-"
        if key == "t":
            return time.strftime("[%d/%b/%Y:%H:%M:%S %z]")
        if key == "r":
            if "REQUEST_METHOD" not in env:  # refused before its request line was understood
                return "-"
            return _escape(f"{env['REQUEST_METHOD']} {env.get('RAW_URI', '')} {env['SERVER_PROTOCOL']}")
        if key == "m":
            return env.get("REQUEST_METHOD", "-")
        if key == "U":
            return _escape(env.get("PATH_INFO", ""))
        if key == "q":
            return _escape(env.get("QUERY_STRING", ""))
        if key == "H":
            return env.get("SERVER_PROTOCOL", "-")
        if key == "s":
            return rec.status[:3]
        if key == "B":
            return str(rec.sent)
        if key == "b":
            return str(rec.sent) if rec.sent else "-"
        if key == "f":
            return _escape(env.get("HTTP_REFERER", "-"))
        if key == "a":
            return _escape(env.get("HTTP_USER_AGENT", "-"))
        if key == "T":
            return str(int(rec.duration))
        if key == "D":
            return str(int(rec.duration * 1_000_000))
        if key == "M":
            return str(int(rec.duration * 1000))
        if key == "L":
            return f"{rec.duration:.6f}"
        if key == "p":
            return f"<{os.getpid()}>"
        raise KeyError(key)


def _as_sent(text: str | None) -> str | None:
    """Non-ASCII request bytes as ``\\xNN`` in JSON too, the same as in the text formats."""
    if text is None or text.isascii():
        return text
    return "".join(ch if ord(ch) < 128 else (f"\\x{ord(ch):02x}" if ord(ch) < 256 else ch)
                   for ch in text)


def _json_line(rec: AccessRecord) -> str:
    env = rec.environ
    return json.dumps({
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "remote_addr": env.get("REMOTE_ADDR") or None,
        "method": env.get("REQUEST_METHOD"),
        "uri": _as_sent(env.get("RAW_URI", "")),
        "path": _as_sent(env.get("PATH_INFO", "")),
        "query": _as_sent(env.get("QUERY_STRING", "")),
        "protocol": env.get("SERVER_PROTOCOL"),
        "status": int(rec.status[:3]),
        "bytes": rec.sent,
        "duration_ms": round(rec.duration * 1000, 3),
        "referer": _as_sent(env.get("HTTP_REFERER")),
        "user_agent": _as_sent(env.get("HTTP_USER_AGENT")),
        "pid": os.getpid(),
    }, ensure_ascii=True)


def check_access_log_format(fmt: str) -> None:
    """Raise ValueError for a format that would fail on the first request."""
    if fmt in _FORMATS or fmt == "json":
        return
    probe = AccessRecord({"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1"}, "200 OK", [], 0, 0.0)
    try:
        fmt % _Atoms(probe)
    except KeyError as exc:
        raise ValueError(f"unknown atom {exc.args[0]!r} in access log format") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid access log format: {exc}") from None


class AccessLog:
    def __init__(self, path: str, fmt: str) -> None:
        self.path = path
        self._json = fmt == "json"
        self._format = _FORMATS.get(fmt, fmt)
        self._fd = self._open()

    def _open(self) -> int:
        if self.path == "-":
            return sys.stdout.fileno()
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def reopen(self) -> None:
        if self.path != "-":
            old, self._fd = self._fd, self._open()
            os.close(old)

    def write(self, rec: AccessRecord) -> None:
        try:
            line = _json_line(rec) if self._json else self._format % _Atoms(rec)
            os.write(self._fd, (line + "\n").encode("utf-8", "replace"))
        except Exception:  # a broken log line must never fail a request
            log.exception("could not write access log line")


def format_exception_line(exc: BaseException) -> str:
    """``Type: message (file, line N)``: a one-line answer to 'what broke, and where do I look'.

    The place named is the innermost frame of the user's code (see ``frames``), not importlib's
    or sharedsock's own; when the traceback has none, no place is named rather than a wrong one.
    """
    from .frames import user_location

    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({exc.filename}, line {exc.lineno})"
    else:
        location = user_location(exc.__traceback__)
        if location is not None:
            where = f" ({location[0]}, line {location[1]})"
    message = str(exc) if not isinstance(exc, SyntaxError) else (exc.msg or str(exc))
    return f"{type(exc).__name__}: {message}{where}"
