"""``sharedsock status`` and ``sharedsock top``: the master's live view, in a terminal.

Both read ``/status.json`` from the ``--metrics-bind`` address, so they work for any front
end (``sharedsock``, ``flask runshared``, ``manage.py runshared``) and need nothing from the
server but that address. ``status`` prints one table; ``top`` redraws it every second, like
top(1), until ``q`` or Ctrl-C. When stdout is not a terminal both print plain text with no
escape codes (``top`` then prints a table per refresh, as ``top -b`` does).

Exit codes: 0; 1 when the address does not answer as a sharedsock master; 2 for a usage
error (no address, a malformed one).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from .errors import ConfigError
from .listeners import parse_bind

TIMEOUT = 5.0
ENV = "SHAREDSOCK_METRICS_BIND"
_CLEAR = "\x1b[H\x1b[2J"
_BOLD, _DIM, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"


class Unreachable(Exception):
    """The address gave no status: not listening, not sharedsock, or too slow."""


class Target:
    """Where the master's status server listens: a TCP address or a unix socket path."""

    def __init__(self, text: str) -> None:
        self.text = text
        if text.startswith(("http://", "https://")):
            if text.startswith("https://"):
                raise ConfigError(f"{text}: the metrics address speaks plain HTTP; use http://")
            text = text[7:].split("/", 1)[0]
        try:
            spec = parse_bind(text)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("--bind ", "address ")) from None
        if spec.kind == "fd":
            raise ConfigError(f"{self.text}: give the metrics address (HOST:PORT or unix:/PATH)")
        self.path = spec.path  # a unix socket's; "" for TCP
        self.address = ("", 0)
        if spec.kind == "unix":
            return
        if spec.port == 0:
            raise ConfigError(f"{self.text}: port 0 means the server picked a free port; give the one "
                              "it logged ('Metrics and health at: ...')")
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(spec.host, spec.host)
        self.address = (host, spec.port)

    def get(self, path: str, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        """(status, body) of ``GET path``; the status server closes after each answer."""
        try:
            if self.path:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(self.path)
            else:
                sock = socket.create_connection(self.address, timeout=timeout)
            with sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: sharedsock\r\nConnection: close\r\n\r\n"
                             .encode())
                chunks = []
                deadline = time.monotonic() + timeout
                while True:
                    data = sock.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
                    if time.monotonic() > deadline:
                        raise TimeoutError("the answer took too long")
        except OSError as exc:
            raise Unreachable(exc.strerror or str(exc) or type(exc).__name__) from None
        head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
        parts = head.split(b"\r\n", 1)[0].split()
        if not sep or len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise Unreachable("the answer is not HTTP")
        return int(parts[1]), body

    def snapshot(self) -> dict[str, Any]:
        status, body = self.get("/status.json")
        if status == 404:
            raise Unreachable("no /status.json there: not a sharedsock metrics address, or an older "
                              "sharedsock")
        if status != 200:
            raise Unreachable(f"/status.json answered {status}")
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or "workers" not in data:
            raise Unreachable("its /status.json is not a sharedsock status: is this the server's "
                              "--metrics-bind address, not its --bind?")
        return data


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _mib(size: int | None) -> str:
    return "-" if size is None else f"{size / 1048576:.1f}M"


COLUMNS = ("WORKER", "PID", "GEN", "STATE", "REQUESTS", "REQ/S", "INFLIGHT", "ACCEPTED", "SHARE", "RSS",
           "AGE", "HEARTBEAT")


def worker_rows(data: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for w in data["workers"]:
        beat = w.get("heartbeat_age_seconds")
        rows.append((str(w["worker"]), str(w["pid"]), str(w["generation"]), w["state"], str(w["requests"]),
                     f"{w['requests_per_second']:.1f}", str(w["in_flight"]), str(w["accepted"]),
                     f"{w['accepted_share'] * 100:.1f}%", _mib(w.get("rss_bytes")), _age(w["age_seconds"]),
                     "-" if beat is None else f"{beat:.1f}s"))
    return rows


def render(data: dict[str, Any], terminal: bool = False, source: str = "") -> str:
    """The view as text; ``terminal`` adds bold and dim (never when stdout is a file or pipe)."""
    m, t = data["master"], data["totals"]
    state = "stopping" if m["stopping"] else "ready" if m["ready"] else "not ready"
    lines = [f"sharedsock {data['version']} at {source}: master {m['pid']}, up {_age(m['uptime_seconds'])}, "
             f"generation {m['generation']}, {m['workers_ready']} of {m['workers_wanted']} workers ready, "
             f"{state}, {m['reloads']} reloads",
             f"requests {t['requests']} ({t['requests_per_second']:.1f}/s), 5xx {t['errors_5xx']}, "
             f"in flight {t['in_flight']}, connections open {t['connections_open']}, "
             f"accepted {t['accepted']}"]
    for listener in data["listeners"]:
        queue = "-" if listener["queue"] is None else f"{listener['queue']} of {listener['limit']}"
        lines.append(f"listener {listener['url']}: accept queue {queue}")
    lines.append("")
    rows = worker_rows(data)
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(COLUMNS)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 3 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    header = line(COLUMNS)
    lines.append(f"{_BOLD}{header}{_RESET}" if terminal else header)
    for row, w in zip(rows, data["workers"]):
        text = line(row)
        lines.append(f"{_DIM}{text}{_RESET}" if terminal and w["state"] != "ready" else text)
    return "\n".join(lines) + "\n"


def _address(given: str | None) -> Target:
    text = given or os.environ.get(ENV, "")
    if not text:
        raise ConfigError(f"no address: give the server's --metrics-bind address (HOST:PORT or "
                          f"unix:/PATH), or set {ENV}")
    return Target(text)


def _parser(command: str) -> argparse.ArgumentParser:
    what = ("print the running server's workers once" if command == "status" else
            "show the running server's workers, refreshed every second, until q or Ctrl-C")
    parser = argparse.ArgumentParser(
        prog=f"sharedsock {command}", description=f"{what}, read from the master's --metrics-bind "
        "address (/status.json). Exit 1 when it does not answer, 2 for a usage error.")
    parser.add_argument("address", nargs="?", metavar="ADDRESS",
                        help=f"the --metrics-bind address: HOST:PORT, [IPV6]:PORT, unix:/PATH or "
                             f"http://HOST:PORT (default: ${ENV})")
    if command == "status":
        parser.add_argument("--json", action="store_true", help="print /status.json as it is")
    else:
        parser.add_argument("-d", "--delay", type=float, default=1.0, metavar="SECONDS",
                            help="seconds between refreshes (default 1)")
        parser.add_argument("-n", "--iterations", type=int, default=0, metavar="N",
                            help="stop after N refreshes (default: run until q or Ctrl-C)")
    return parser


def main(argv: Sequence[str]) -> int:
    """``argv`` starts with the command, ``status`` or ``top``."""
    command, rest = argv[0], list(argv[1:])
    parser = _parser(command)
    args = parser.parse_args(rest)
    try:
        target = _address(args.address)
    except ConfigError as exc:
        print(f"sharedsock {command}: error: {exc}", file=sys.stderr)
        return 2
    try:
        if command == "status":
            return _status(target, args.json)
        if args.delay <= 0:
            parser.error("--delay must be above 0")
        return _top(target, args.delay, args.iterations)
    except Unreachable as exc:
        print(f"sharedsock {command}: no status from {target.text}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `sharedsock top | head`
        sys.stderr.close()
        return 0


def _status(target: Target, raw: bool) -> int:
    data = target.snapshot()
    if raw:
        print(json.dumps(data, indent=2))
    else:
        sys.stdout.write(render(data, terminal=_colors(sys.stdout), source=target.text))
    return 0


def _colors(stream: TextIO) -> bool:
    return stream.isatty() and os.environ.get("TERM") != "dumb" and not os.environ.get("NO_COLOR")


def _top(target: Target, delay: float, iterations: int) -> int:
    out = sys.stdout
    data = target.snapshot()  # the first one must answer: a wrong address is one clear line
    if not out.isatty():
        count = 0
        while True:
            out.write(render(data, source=target.text))
            out.flush()
            count += 1
            if iterations and count >= iterations:
                return 0
            time.sleep(delay)
            out.write("\n")
            data = target.snapshot()
    return _top_terminal(target, data, delay, iterations)


def _top_terminal(target: Target, data: dict[str, Any] | None, delay: float, iterations: int) -> int:
    import termios
    import tty

    out = sys.stdout
    keys = sys.stdin if sys.stdin.isatty() else None
    saved = termios.tcgetattr(keys.fileno()) if keys is not None else None
    error = ""
    count = 0
    try:
        if keys is not None:
            tty.setcbreak(keys.fileno())  # q is read at once, without Enter
        out.write("\x1b[?25l")  # hide the cursor while redrawing
        while True:
            colors = _colors(out)
            screen = render(data, terminal=colors, source=target.text) if data is not None else ""
            if error:
                screen += f"\n{error}\n"
            hint = "q or Ctrl-C: quit"
            out.write(_CLEAR + screen + "\n" + (f"{_DIM}{hint}{_RESET}" if colors else hint))
            out.flush()
            count += 1
            if iterations and count >= iterations:
                return 0
            if _wait_for_quit(keys, delay):
                return 0
            try:
                data, error = target.snapshot(), ""
            except Unreachable as exc:  # a restart or an upgrade: keep the last view and retry
                error = f"no status from {target.text}: {exc}; retrying"
    finally:
        out.write("\x1b[?25h\n")
        out.flush()
        if saved is not None and keys is not None:
            termios.tcsetattr(keys.fileno(), termios.TCSADRAIN, saved)


def _wait_for_quit(keys: TextIO | None, delay: float) -> bool:
    """Sleep ``delay``; True if q was typed meanwhile."""
    if keys is None:
        time.sleep(delay)
        return False
    deadline = time.monotonic() + delay
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([keys], [], [], left)
        if ready:
            typed = os.read(keys.fileno(), 64)
            if not typed or b"q" in typed.lower():
                return True
    return False
