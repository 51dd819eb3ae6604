#!/usr/bin/env python3
"""A multi-host test bed for sharedsock, started by one command (needs root, for ``ip netns``).

    python deploy/cluster.py up      # three hosts, HAProxy and nginx; prints their addresses
    python deploy/cluster.py test    # up, every scenario under load, the table, down
    python deploy/cluster.py down    # removes a bed, also one a crashed run left behind

``test`` exits 0 when every scenario held, 1 when one fell short, and 77 (printing why) when
the machine forbids network namespaces. See deploy/README.md.
"""

from __future__ import annotations

import argparse
import fcntl
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster.bed import STATE_DIR, Bed, down
from cluster.netns import DEFAULT_SUBNET, Forbidden
from cluster.packages import say

SKIPPED = 77
INTERRUPTED = 130
LOCK = Path(tempfile.gettempdir()) / "ssk-cluster.lock"  # outside STATE_DIR, which down removes


def interrupted(signum, frame):
    raise KeyboardInterrupt


def become_subreaper() -> None:
    """A master started by SIGUSR2 outlives its parent; as the subreaper we inherit and reap it."""
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cluster.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "test", "down"])
    parser.add_argument("--subnet", default=DEFAULT_SUBNET,
                        help=f"the hosts' private range (default {DEFAULT_SUBNET})")
    parser.add_argument("--results", type=Path, metavar="FILE",
                        help="test: also write the table, as Markdown, to FILE")
    parser.add_argument("--scenario", action="append", metavar="WORDS",
                        help="test: run only the scenarios whose name contains WORDS (repeatable)")
    args = parser.parse_args(argv)
    # SIGTERM (a CI timeout) cleans up as Ctrl-C does.
    signal.signal(signal.SIGTERM, interrupted)
    # The bed's names are fixed: one command at a time.
    lock = open(LOCK, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say(f"another deploy/cluster.py is running (it holds {LOCK}); try again when it is done")
        return 1
    try:
        return run(args)
    except KeyboardInterrupt:
        say("interrupted; the bed is removed")
        return INTERRUPTED
    except (RuntimeError, TimeoutError) as exc:  # the bed could not come up; it says why
        say(f"failed: {exc}")
        return 1


def run(args: argparse.Namespace) -> int:
    if args.command == "down":
        for item in down(STATE_DIR):
            say(f"removed {item}")
        return 0

    bed = Bed(args.subnet)
    try:
        bed.network.check_allowed()
    except Forbidden as exc:
        say(f"skipped: {exc}")
        return SKIPPED
    leftovers = down(STATE_DIR)
    if leftovers:
        say("removed what an earlier bed left: " + ", ".join(leftovers))
    try:
        bed.up()
    except BaseException:
        say("could not bring the bed up; removing it")
        down(STATE_DIR, keep_files=True)
        raise
    if args.command == "up":
        say("up:\n" + bed.describe() + "\n`python deploy/cluster.py down` removes it")
        return 0

    from cluster.scenarios import run_all

    become_subreaper()
    try:
        return run_all(bed, args.results, args.scenario)
    finally:
        bed.haproxy.stop()
        bed.nginx.stop()
        down(STATE_DIR, keep_files=True)
        say(f"bed removed (logs kept in {STATE_DIR} until the next run)")


if __name__ == "__main__":
    sys.exit(main())
