"""Which signals the master and its workers own, so none is left to its default action."""

from __future__ import annotations

import signal

# Signals a person or a process manager may send that sharedsock has no use for (yet): by
# default most of them end a process, and a master that dies takes the port down with it.
UNUSED_SIGNALS = (signal.SIGWINCH, signal.SIGALRM, signal.SIGVTALRM,
                  signal.SIGPROF, signal.SIGIO, signal.SIGPWR)

# What the master catches. A forked child runs the master's handlers until the worker
# installs its own: these are held (blocked) across fork() so one sent in between, say the
# SIGTERM of a shutdown, waits for the worker's handler instead of being lost.
MASTER_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGTTIN,
                  signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, *UNUSED_SIGNALS)

# What a worker ignores: the master decides on these (a Ctrl-C reaches it too).
WORKER_IGNORED = (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR2,
                  *UNUSED_SIGNALS)


def set_process_title(title: str) -> None:
    """``sharedsock: master [app]`` in ps and top, when setproctitle is installed."""
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)
