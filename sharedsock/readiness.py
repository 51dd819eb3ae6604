"""Which of the worker's descriptors are readable: epoll itself where there is one.

The worker's loop asks once per request, and ``selectors`` spends more Python on
each answer than the rest of the loop does (a timeout conversion, an event mask
translated per event, a key looked up through a method). The loop only ever
waits to read, so it needs no masks: it gets back the data it registered.
"""

from __future__ import annotations

import select
import selectors
from typing import Any, Protocol

EVENT_READ = selectors.EVENT_READ


class Readiness(Protocol):
    keys: dict[int, selectors.SelectorKey]  # by fd, read by pool threads without a call

    def register(self, fileobj: Any, events: int, data: Any) -> selectors.SelectorKey: ...
    def unregister(self, fileobj: Any) -> selectors.SelectorKey: ...
    def ready(self, timeout: float) -> list[Any]: ...
    def close(self) -> None: ...


def _fileno(fileobj: Any) -> int:
    fd = fileobj if type(fileobj) is int else fileobj.fileno()
    if fd < 0:
        raise ValueError(f"invalid file descriptor: {fd}")
    return fd


class EpollReadiness:
    """Read readiness by epoll: register, unregister and errors as ``selectors`` has them."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self.keys: dict[int, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any) -> selectors.SelectorKey:
        if events != EVENT_READ:
            raise ValueError(f"only reading is watched here, not events {events!r}")
        fd = _fileno(fileobj)
        if fd in self.keys:
            raise KeyError(f"{fileobj!r} (fd {fd}) is already registered")
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._epoll.register(fd, select.EPOLLIN)
        self.keys[fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        fd = _fileno(fileobj)
        key = self.keys.pop(fd)  # KeyError when it is not registered, as with selectors
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass  # closed already, which took it out of the epoll set
        return key

    def ready(self, timeout: float) -> list[Any]:
        """The data of each registered descriptor readable within ``timeout`` seconds."""
        keys = self.keys
        try:
            events = self._epoll.poll(timeout, len(keys) or 1)
        except InterruptedError:  # a signal handler raised (PEP 475 retries otherwise)
            return []
        return [key.data for fd, _ in events if (key := keys.get(fd)) is not None]

    def close(self) -> None:
        self._epoll.close()
        self.keys.clear()


class SelectorReadiness:
    """Read readiness by the platform's ``selectors`` where there is no epoll."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self.keys: dict[int, selectors.SelectorKey] = {}

    def register(self, fileobj: Any, events: int, data: Any) -> selectors.SelectorKey:
        key = self._selector.register(fileobj, events, data)
        self.keys[key.fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = self._selector.unregister(fileobj)
        self.keys.pop(key.fd, None)
        return key

    def ready(self, timeout: float) -> list[Any]:
        return [key.data for key, _ in self._selector.select(timeout)]

    def close(self) -> None:
        self._selector.close()
        self.keys.clear()


def read_readiness() -> Readiness:
    return EpollReadiness() if hasattr(select, "epoll") else SelectorReadiness()
