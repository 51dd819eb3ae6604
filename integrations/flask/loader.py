"""Worker side: build the Flask app in the worker, so every new worker runs the current code.

``flask runshared`` passes ``AppSpec(loader="sharedsock.integrations.flask.loader:load",
args={...})``; a forked or spawned worker calls ``load(**args)``. Finding the
app is left entirely to Flask's ``ScriptInfo``, so ``--app`` means exactly
what it means to ``flask run``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

WSGIApp = Callable[..., Any]


def load(app_import_path: str | None = None, set_debug_flag: bool = True,
         debugger: bool = False) -> WSGIApp:
    """Import and create the app as ``flask run`` would; wrap it in the debugger if asked."""
    from flask.cli import NoAppException, ScriptInfo

    from sharedsock.errors import AppLoadError

    # A bare ScriptInfo reads no .env file: the master did, and workers inherit its environment.
    info = ScriptInfo(app_import_path=app_import_path, set_debug_flag=set_debug_flag)
    try:
        app = info.load_app()
    except NoAppException as exc:
        raise AppLoadError(exc.format_message()) from None
    if not debugger:
        return app
    debugged = with_debugger(app)
    announce_debugger(debugged)
    return debugged


def with_debugger(app: WSGIApp) -> WSGIApp:
    """The Werkzeug debugger with its interactive console, as ``flask run --debug`` installs it."""
    from werkzeug.debug import DebuggedApplication

    return DebuggedApplication(app, evalex=True)


def announce_debugger(debugged: Any) -> None:
    """Werkzeug prints the PIN only under its own reloader; put it in our log instead."""
    from sharedsock.logs import log

    if debugged.pin is None:
        log.warning("Debugger is active, PIN disabled: anyone who reaches the server can run code")
    else:
        log.info("Debugger is active; Debugger PIN: %s", debugged.pin)
