"""The stand-in's watch reports a request that ran a whole poll, and nothing else.

Both implementations, on a real thread: the Python definition and the compiled one,
which polls with the interpreter lock released. The compiled one's state is per
process, and stop() is for good, so that case runs in a fresh interpreter.
"""

from __future__ import annotations

import threading
import time

import pytest
import test_accelerator

from conftest import wait_for
from sharedsock import inline_watch, speedups

POLL = 0.005
KINDS = ["python", "compiled"]


def make(kind: str, quiet: float = 30.0):
    if kind == "compiled":
        if not speedups.ACCELERATED:
            pytest.skip(f"no compiled watch to test: {speedups.describe()}")
        return inline_watch.CompiledInlineWatch(POLL, quiet, time.pthread_getcpuclockid(threading.get_ident()))
    return inline_watch.InlineWatch(POLL, quiet, time.pthread_getcpuclockid(threading.get_ident()))


def waiting(watch) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(watch.wait()), daemon=True)
    thread.start()
    return thread, out


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_running_a_whole_poll_is_reported_with_its_number(kind):
    watch = make(kind)
    watch.begin()
    try:
        thread, out = waiting(watch)
        thread.join(30)
        assert not thread.is_alive()
        seq, waited = out[0]
        assert watch.still(seq) and waited >= POLL * 0.9
    finally:
        watch.end()
    assert not watch.still(seq)


@pytest.mark.parametrize("kind", KINDS)
def test_the_next_request_is_never_taken_for_the_last(kind):
    """A sample of one request must not match the next on the same connection."""
    watch = make(kind)
    watch.begin()
    thread, out = waiting(watch)
    thread.join(30)
    seq, _ = out[0]
    watch.end()
    watch.begin()
    try:
        assert not watch.still(seq)
    finally:
        watch.end()


def switches(thread: threading.Thread) -> int:
    with open(f"/proc/self/task/{thread.native_id}/status") as status:
        return sum(int(line.split()[1]) for line in status if "ctxt_switches" in line)


@pytest.mark.parametrize("kind", KINDS)
def test_a_quiet_watch_sleeps_until_the_next_request_begins(kind):
    """After a quiet spell the watch stops polling, and the next request's start wakes it:
    it must still see that request run a whole poll."""
    watch = make(kind, quiet=0.05)
    thread, out = waiting(watch)
    try:
        wait_for(watch.sleeping, message="the watch asleep after the quiet spell")
        before = switches(thread)
        time.sleep(20 * POLL)  # the window in which it must neither wake nor return
        assert thread.is_alive() and out == []
        assert switches(thread) - before <= 2
        watch.begin()
        thread.join(30)
        assert not thread.is_alive()
        seq, waited = out[0]
        assert watch.still(seq) and waited >= POLL * 0.9
        assert not watch.sleeping()
    finally:
        watch.end()


def test_python_stop_ends_a_wait():
    watch = make("python")
    thread, out = waiting(watch)
    watch.stop()
    thread.join(30)
    assert not thread.is_alive() and out == [None]


def test_python_stop_ends_a_sleep():
    watch = make("python", quiet=0.01)
    thread, out = waiting(watch)
    wait_for(watch.sleeping, message="the watch asleep")
    watch.stop()
    thread.join(30)
    assert not thread.is_alive() and out == [None]


@pytest.mark.parametrize("quiet", [30.0, 0.01])
def test_compiled_stop_ends_a_wait_and_every_later_one(quiet):
    """Stopped while polling (quiet 30 s: the thread is in nanosleep between polls) or while
    asleep (quiet 10 ms)."""
    if not speedups.ACCELERATED:
        pytest.skip(f"no compiled watch to test: {speedups.describe()}")
    waiting_now = "w.sleeping()" if quiet < 1 else "'nanosleep' in open(wchan).read()"
    code = (
        "import threading, time\n"
        "from sharedsock.inline_watch import CompiledInlineWatch\n"
        f"w = CompiledInlineWatch(0.005, {quiet}, None)\n"
        "out = []\n"
        "t = threading.Thread(target=lambda: out.append(w.wait()), daemon=True)\n"
        "t.start()\n"
        "wchan = f'/proc/self/task/{t.native_id}/wchan'\n"
        "deadline = time.monotonic() + 30\n"
        f"while not ({waiting_now}) and time.monotonic() < deadline: time.sleep(0.005)\n"
        "w.stop(); t.join(30)\n"
        "w.begin()\n"
        "print(t.is_alive(), out, w.wait())\n")
    assert test_accelerator.python_prints(code) == "False [None] None"


def test_bad_arguments_are_refused():
    if not speedups.ACCELERATED:
        pytest.skip(f"no compiled watch to test: {speedups.describe()}")
    with pytest.raises(TypeError):
        speedups.compiled.inline_wait(0.002, 1.0)
    with pytest.raises(TypeError):
        speedups.compiled.inline_wait(2, 1.0, None)
    with pytest.raises(ValueError):
        speedups.compiled.inline_wait(0.0, 1.0, None)
    with pytest.raises(TypeError):
        speedups.compiled.inline_still("1")
