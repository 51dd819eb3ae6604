"""Telling systemd how the server is doing (``sd_notify``), without a dependency: one datagram.

With ``Type=notify`` systemd starts dependent units, and ``systemctl reload``
returns, only once the server says ``READY=1``; ``WatchdogSec=`` restarts a
master whose loop stopped turning. Nothing here does anything unless systemd
(or a test playing its part) set ``NOTIFY_SOCKET``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from .logs import log


class Notifier:
    """Sends ``sd_notify`` messages from the master."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace
            address = "\0" + address[1:]
        self._address = address
        self._sock: socket.socket | None = None
        self.watchdog_interval = 0.0
        try:
            usec = int(environ.get("WATCHDOG_USEC", "0"))
            pid = int(environ.get("WATCHDOG_PID", str(os.getpid())))
        except ValueError:
            usec, pid = 0, -1
        if address and usec > 0 and pid == os.getpid():
            self.watchdog_interval = usec / 2e6  # ping twice per period, as sd_watchdog_enabled advises
        self._next_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, **fields: object) -> None:
        """``notify(READY=1, STATUS="2 workers")`` sends ``READY=1\\nSTATUS=2 workers``."""
        if not self._address:
            return
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self._address)
        except OSError as exc:
            log.warning("could not notify systemd at %s: %s", self._address.lstrip("\0"), exc)

    def ready(self, status: str) -> None:
        self.notify(READY=1, STATUS=status)

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify(RELOADING=1, MONOTONIC_USEC=usec)

    def stopping(self) -> None:
        self.notify(STOPPING=1)

    def status(self, text: str) -> None:
        self.notify(STATUS=text)

    def ping_if_due(self, now: float) -> None:
        if self.watchdog_interval and now >= self._next_ping:
            self._next_ping = now + self.watchdog_interval
            self.notify(WATCHDOG=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
