"""Check, before binding, that the workers will find the app, without importing it in the master.

A forked worker inherits every module the master imported. If the master
imported the app to check it, a reload would fork workers that still hold
the old code. So the check runs in a throwaway interpreter with the
master's ``sys.path`` and environment, using Flask's own ``ScriptInfo``
(exactly what each worker will run), and reports back over a pipe:
the app's name and its ``app.config["SHAREDSOCK"]``, or Flask's error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from typing import Any

_PROBE_BOOT = (
    "import json, sys; "
    "args = json.loads(sys.argv[1]); sys.path[:] = args['sys_path']; "
    "from sharedsock.integrations.flask.discovery import probe_main; probe_main(args)"
)


@dataclass(frozen=True)
class Found:
    name: str  # the Flask app's name, for logs and process titles
    settings: Any  # app.config.get("SHAREDSOCK"), as JSON; checked by settings.app_settings


class NotFound(Exception):
    """Flask could not find the app; ``message`` is Flask's own (NoAppException)."""


class LoadFailed(Exception):
    """Importing or creating the app raised; the message is one line naming the user's file."""


def probe(app_import_path: str | None, set_debug_flag: bool = True,
          show_traceback: bool = False) -> Found:
    """Load the app in a subprocess the way a worker will; raise NotFound or LoadFailed.

    ``show_traceback`` (``--log-level debug``) prints the app's whole traceback to stderr
    first; otherwise the one line of ``LoadFailed`` is the whole answer, as from the engine.
    """
    read_fd, write_fd = os.pipe()
    args = {"app_import_path": app_import_path, "set_debug_flag": set_debug_flag,
            "sys_path": sys.path, "fd": write_fd, "show_traceback": show_traceback}
    try:
        proc = subprocess.Popen([sys.executable, "-c", _PROBE_BOOT, json.dumps(args)],
                                pass_fds=[write_fd], stdin=subprocess.DEVNULL)
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    code = proc.wait()
    try:
        result = json.loads(data)
    except ValueError:
        raise LoadFailed(f"the process that checks the app exited with code {code} "
                         "before reporting") from None
    if result.get("found"):
        return Found(result["name"], result.get("settings"))
    if result.get("not_found"):
        raise NotFound(result["message"])
    raise LoadFailed(result["message"])


def probe_main(args: dict[str, Any]) -> None:
    """The subprocess side: ``ScriptInfo.load_app()`` and one JSON line on the pipe."""
    from flask.cli import NoAppException, ScriptInfo

    try:
        info = ScriptInfo(app_import_path=args["app_import_path"],
                          set_debug_flag=args["set_debug_flag"])
        app = info.load_app()
        result = {"found": True, "name": app.name,
                  "settings": app.config.get("SHAREDSOCK")}
    except NoAppException as exc:
        cause = _import_error_inside_the_app(exc)
        if cause is None:
            result = {"not_found": True, "message": exc.format_message()}
        else:
            result = _failure(cause, args)
    except BaseException as exc:
        result = _failure(exc, args)
    payload = json.dumps(result, default=repr).encode()
    with os.fdopen(args["fd"], "wb") as pipe:
        pipe.write(payload)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip atexit hooks and thread joins the app may have set up


def _failure(exc: BaseException, args: dict[str, Any]) -> dict[str, Any]:
    from sharedsock.logs import format_exception_line

    if args.get("show_traceback"):
        traceback.print_exception(exc)
    return {"message": format_exception_line(exc)}


def _import_error_inside_the_app(exc: Any) -> BaseException | None:
    """Flask reports an ImportError raised *inside* the app's module (``import requestz``) as
    NoAppException with the whole traceback in its text; the ImportError itself, kept as the
    context, makes the one-line answer. A module that is simply not there stays NoAppException."""
    context = exc.__context__
    if isinstance(context, ImportError) and exc.format_message().startswith("While importing"):
        return context
    return None
