"""The optional compiled accelerator, and the switch that turns it off.

``sharedsock._speedups`` is built from C when the package is installed with a
compiler; without one the install goes on, and everything runs in Python with the
same behaviour. The compiled path only ever takes requests the Python path would
take identically and hands everything else to it (``_headscan.h`` says which
heads; ``_environ.c`` which targets get their environ built in C; ``_response.c``
which ``start_response`` calls and plans it takes), so
``SHAREDSOCK_PURE_PYTHON=1``, which forces the Python path, changes speed and
nothing else: CI runs the HTTP tests both ways.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

FORCED_OFF = os.environ.get("SHAREDSOCK_PURE_PYTHON", "") not in ("", "0")

# What the Python side binds to. An extension built from other sources (a source tree
# updated without rebuilding) lacks some of them, or fills records whose slots have
# changed since: it is left unused, not half used.
FUNCTIONS = ("scan_head", "head_setup", "build_environ", "environ_setup", "roomy_dict",
             "check_start_response", "check_setup", "render_head", "response_setup", "inline_begin",
             "inline_end", "inline_still", "inline_stop", "inline_sleeping", "inline_wait")

compiled: ModuleType | None = None  # the extension module, when built, current and not switched off
scan_head: Callable[[bytes, int, int, int, int, int], Any] | None = None  # a RequestHead or None
_stale = False
if not FORCED_OFF:
    try:
        from . import _speedups
    except ImportError:
        pass
    else:
        from .http.records import RequestHead, ResponsePlan
        if (all(hasattr(_speedups, name) for name in FUNCTIONS)
                and getattr(_speedups, "REQUEST_HEAD_SLOTS", None) == RequestHead.__slots__
                and getattr(_speedups, "RESPONSE_PLAN_SLOTS", None) == ResponsePlan.__slots__):
            compiled = _speedups
            scan_head = _speedups.scan_head
        else:
            _stale = True

ACCELERATED = compiled is not None


def describe() -> str:
    """For the startup log and the benchmark records."""
    if ACCELERATED:
        return "compiled accelerator on"
    if FORCED_OFF:
        return "pure Python (SHAREDSOCK_PURE_PYTHON is set)"
    if _stale:
        return "pure Python (the compiled accelerator is out of date: reinstall to rebuild it)"
    return "pure Python (the compiled accelerator is not built)"
