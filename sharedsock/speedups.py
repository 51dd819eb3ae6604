"""The optional compiled accelerator, and the switch that turns it off.

``sharedsock._speedups`` is built from C when the package is installed with a
compiler; without one the install goes on, and everything runs in Python with the
same behaviour. The compiled path only ever takes requests the Python path would
take identically and hands everything else to it (``_headscan.h`` says which
heads; ``_environ.c`` which targets get their environ built in C), so
``SHAREDSOCK_PURE_PYTHON=1``, which forces the Python path, changes speed and
nothing else: CI runs the HTTP tests both ways.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType

FORCED_OFF = os.environ.get("SHAREDSOCK_PURE_PYTHON", "") not in ("", "0")

compiled: ModuleType | None = None  # the extension module, when built and not switched off
scan_head: Callable[[bytes, int, int, int, int], tuple | None] | None = None
if not FORCED_OFF:
    try:
        from . import _speedups
    except ImportError:
        pass
    else:
        compiled = _speedups
        scan_head = _speedups.scan_head

ACCELERATED = scan_head is not None


def describe() -> str:
    """For the startup log and the benchmark records."""
    if ACCELERATED:
        return "compiled accelerator on"
    if FORCED_OFF:
        return "pure Python (SHAREDSOCK_PURE_PYTHON is set)"
    return "pure Python (the compiled accelerator is not built)"
