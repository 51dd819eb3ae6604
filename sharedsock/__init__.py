"""sharedsock: a WSGI server whose master binds once and shares the socket with N workers.

``import sharedsock`` stays cheap on purpose: the Flask entry point imports it
for every ``flask`` command, so the engine loads only when something runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "serve"]


def serve(app: Callable | str, **options: Any) -> None:
    """Serve a WSGI app until the server is stopped (SIGTERM, SIGINT).

    ``app`` is a WSGI callable (fork start method only) or an import string
    such as ``"myproject.wsgi:application"`` (either start method). Options
    take the names of the command-line flags with underscores, for example
    ``serve(app, bind=["127.0.0.1:8080"], workers=4)``. Bad options raise
    ``sharedsock.errors.ConfigError``; must be called on the main thread.
    """
    from .runner import serve as _serve

    _serve(app, **options)
