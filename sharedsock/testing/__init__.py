"""Run a real sharedsock server from a test suite: a master and its workers, on a port the
master binds itself, ready when the master says so.

The pytest plugin (``sharedsock.pytest_plugin``) builds its fixtures on ``serving()``;
it also works without pytest, in a ``unittest`` suite or a script::

    with serving("myproject.wsgi:application", workers=2) as live:
        urllib.request.urlopen(live.url("/health"))
"""

from __future__ import annotations

from .live import LiveServer, Response, ServerError, serving, set_defaults, start

__all__ = ["LiveServer", "Response", "ServerError", "serving", "set_defaults", "start"]
