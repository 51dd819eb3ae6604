"""The worker loop's readiness source: epoll itself, or selectors where there is no epoll.

Both must answer as ``selectors`` does wherever the worker relies on it: the data
registered comes back for a readable descriptor, registering twice and unregistering
an unknown descriptor raise KeyError, and a descriptor closed before it is
unregistered leaves no trace.
"""

from __future__ import annotations

import select
import socket

import pytest

from sharedsock.readiness import EVENT_READ, EpollReadiness, SelectorReadiness, read_readiness

KINDS = [SelectorReadiness]
if hasattr(select, "epoll"):
    KINDS.insert(0, EpollReadiness)


@pytest.fixture(params=KINDS, ids=lambda kind: kind.__name__)
def readiness(request):
    watched = request.param()
    yield watched
    watched.close()


def test_the_loop_gets_epoll_where_the_platform_has_it():
    expected = EpollReadiness if hasattr(select, "epoll") else SelectorReadiness
    watched = read_readiness()
    try:
        assert type(watched) is expected
    finally:
        watched.close()


def test_only_readable_descriptors_come_back_with_their_data(readiness):
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with a, b, c, d:
        readiness.register(a, EVENT_READ, "a")
        readiness.register(c.fileno(), EVENT_READ, "c")
        assert readiness.ready(0) == []
        b.send(b"x")
        assert readiness.ready(5) == ["a"]
        d.send(b"y")
        assert sorted(readiness.ready(5)) == ["a", "c"]
        assert readiness.keys[c.fileno()].data == "c"


def test_registering_twice_or_unregistering_a_stranger_raises_key_error(readiness):
    a, b = socket.socketpair()
    with a, b:
        readiness.register(a, EVENT_READ, "a")
        with pytest.raises(KeyError):
            readiness.register(a.fileno(), EVENT_READ, "again")
        with pytest.raises(KeyError):
            readiness.unregister(b)
        assert readiness.unregister(a).data == "a"
        assert readiness.keys == {}


def test_a_descriptor_closed_before_unregistering_leaves_no_trace(readiness):
    a, b = socket.socketpair()
    fd = a.fileno()
    readiness.register(fd, EVENT_READ, "a")
    a.close()
    b.close()
    readiness.unregister(fd)
    assert readiness.ready(0) == []
    assert fd not in readiness.keys


def test_an_invalid_descriptor_is_a_value_error(readiness):
    closed = socket.socket()
    closed.close()  # fileno() is -1 now
    with pytest.raises(ValueError):
        readiness.register(closed, EVENT_READ, None)
