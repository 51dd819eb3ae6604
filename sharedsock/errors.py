"""One error family for the whole server.

Configuration problems must reach the user as a single line and exit code 2;
protocol problems must reach the client as a status code. Keeping both in one
family lets the CLI, ``serve()`` and the integrations catch exactly what they
can explain and let everything else surface as a real bug.
"""

from __future__ import annotations


class SharedsockError(Exception):
    """Base class of every error sharedsock raises on purpose."""

    exit_code = 1


class ConfigError(SharedsockError):
    """Bad configuration: reported as one line, exit code 2, before anything starts."""

    exit_code = 2


class AppLoadError(SharedsockError):
    """The WSGI application could not be imported or is not callable."""

    exit_code = 2


def exit_code_for(exc: BaseException) -> int:
    """The exit status every front end gives for an error that stopped the server starting:
    2 for what the user must fix (configuration, an app that does not load), 1 otherwise."""
    if isinstance(exc, SharedsockError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1


class ProtocolError(SharedsockError):
    """The client broke HTTP; ``status`` is what it should be told before we close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
