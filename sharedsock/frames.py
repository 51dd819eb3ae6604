"""Which frame of a traceback is the user's: where to point when an app fails to load.

The innermost frame of an import error is usually importlib's
(``<frozen importlib._bootstrap>``) and of a bad factory call sharedsock's own
loader; neither is a place the user can edit. The line worth naming is the
innermost one in the user's code, else the innermost in a library they call.
"""

from __future__ import annotations

import os
import sysconfig
from types import TracebackType

_OWN_PACKAGE = "sharedsock"
_IMPORT_MACHINERY = ("importlib", "_frozen_importlib", "_frozen_importlib_external", "zipimport")


def library_prefixes() -> tuple[str, ...]:
    """Standard library and site-packages folders: code a user does not edit, so ``--reload``
    does not spend a stat() per file per second on it."""
    paths = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            paths.add(sysconfig.get_path(key))
        except KeyError:
            pass
    return tuple(sorted(p.rstrip("/") + "/" for p in paths if p))


def _is_ours_or_importlib(module: str, filename: str) -> bool:
    if filename.startswith("<frozen "):
        return True
    top = module.partition(".")[0]
    return top == _OWN_PACKAGE or top in _IMPORT_MACHINERY


def user_location(tb: TracebackType | None) -> tuple[str, int] | None:
    """``(file, line)`` of the innermost user frame, else the innermost library frame, else None."""
    libraries = library_prefixes()
    user = library = None
    while tb is not None:
        frame = tb.tb_frame
        filename = frame.f_code.co_filename
        module = frame.f_globals.get("__name__") or ""
        if not _is_ours_or_importlib(str(module), filename):
            where = (filename, tb.tb_lineno)
            if os.path.abspath(filename).startswith(libraries):
                library = where
            else:
                user = where
        tb = tb.tb_next
    return user or library
