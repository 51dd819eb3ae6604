"""The stand-in's watch over the request the main thread serves inline (see worker._stand_in).

The main thread marks each inline request's start and end; the stand-in waits until
one has run a whole poll (then it may take the loop over). After a quiet spell with
nothing served inline it stops polling, and the next request's start wakes it. A poll
that comes late while the main thread got no CPU may mean the whole process stood still
(the host, swapping), so it decides nothing: the next poll does, once per request.

``InlineWatch`` is the definition. With the compiled accelerator the same rules run in
C with the interpreter lock released between polls (``_inline_watch.c``): polling in
Python takes the lock every poll from a main thread busy serving, at the cost of
context switches on every poll, and a thread woken from a quiet spell wants it from the
main thread serving the request that woke it.
"""

from __future__ import annotations

import threading
import time

from .speedups import compiled as _speedups


class InlineWatch:
    """Per-serve sequence numbers, so a sample never mistakes the next request for the last."""

    def __init__(self, poll: float, quiet: float, main_cpu_clock: int | None) -> None:
        self.poll = poll
        self.quiet = quiet
        self.main_cpu_clock = main_cpu_clock
        self.seq = 0
        self.serving = False
        self.stopped = False
        self.asleep = False
        self._wake = threading.Event()

    def begin(self) -> None:
        self.seq += 1
        self.serving = True
        if self.asleep:  # read after serving is set: see _sleep
            self._wake.set()

    def end(self) -> None:
        self.serving = False

    def still(self, seq: int) -> bool:
        """Whether the request ``wait`` reported is still the one running inline."""
        return self.serving and self.seq == seq

    def stop(self) -> None:
        self.stopped = True
        self._wake.set()

    def sleeping(self) -> bool:
        """Whether ``wait`` sleeps through a quiet spell, until the next ``begin``."""
        return self.asleep

    def _sleep(self, seq: int) -> None:
        """Until a request begins after ``seq``. ``asleep`` is set before the counters are
        read, and ``begin`` sets them before it reads ``asleep``: one sees the other."""
        self.asleep = True
        while not self.stopped and not self.serving and self.seq == seq:
            self._wake.wait()
            self._wake.clear()
        self.asleep = False

    def wait(self) -> tuple[int, float] | None:
        """(seq, seconds since the poll began) of a request that ran a whole poll; None once stopped."""
        poll, clock = self.poll, self.main_cpu_clock
        seen = -1
        skipped = False
        active = time.monotonic()
        while not self.stopped:
            polled = time.monotonic()
            cpu = time.clock_gettime(clock) if clock is not None else 0.0
            time.sleep(poll)
            serving, seq = self.serving, self.seq
            now = time.monotonic()
            if not serving or seq != seen:
                if serving:
                    active = now
                elif now - active > self.quiet:
                    self._sleep(seq)
                    active = time.monotonic()
                    seen = -1
                    skipped = False
                    continue
                seen = seq if serving else -1
                skipped = False
                continue
            if not skipped and clock is not None and now - polled > 2 * poll \
                    and time.clock_gettime(clock) - cpu < poll / 2:
                skipped = True
                continue
            return seq, now - polled
        return None


class CompiledInlineWatch:
    """The same watch in C; its state is the extension's (one worker per process)."""

    def __init__(self, poll: float, quiet: float, main_cpu_clock: int | None) -> None:
        assert _speedups is not None
        self._args = (float(poll), float(quiet), main_cpu_clock)
        self.begin = _speedups.inline_begin
        self.end = _speedups.inline_end
        self.still = _speedups.inline_still
        self.stop = _speedups.inline_stop
        self.sleeping = _speedups.inline_sleeping

    def wait(self) -> tuple[int, float] | None:
        assert _speedups is not None
        return _speedups.inline_wait(*self._args)


def inline_watch(poll: float, quiet: float, main_cpu_clock: int | None) -> InlineWatch | CompiledInlineWatch:
    if _speedups is None:
        return InlineWatch(poll, quiet, main_cpu_clock)
    return CompiledInlineWatch(poll, quiet, main_cpu_clock)
