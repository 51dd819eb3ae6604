"""Starting a fresh interpreter that runs sharedsock code: spawned workers and the Django hand-over.

Both must behave like the process that started them: the same ``sys.path`` (the
app's directory, an editable install) and the same ``-W``, ``-X`` and ``-O``
options, which change what the app's code does.
"""

from __future__ import annotations

import json
import os
import sys

SYS_PATH_ENV = "SHAREDSOCK_SYS_PATH"


def interpreter_flags() -> list[str]:
    flags = [f"-W{w}" for w in sys.warnoptions]
    for key, value in sys._xoptions.items():
        flags.append(f"-X{key}" if value is True else f"-X{key}={value}")
    if sys.flags.optimize:
        flags.append("-" + "O" * sys.flags.optimize)
    return flags


def fresh_interpreter(entry: str, env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """``(argv, environ)`` of a new interpreter that calls ``entry`` (``module:function``)."""
    module, _, function = entry.partition(":")
    code = ("import json, os, sys; "
            f"sys.path[:] = json.loads(os.environ[{SYS_PATH_ENV!r}]); "
            f"from {module} import {function}; {function}()")
    environ = dict(os.environ if env is None else env)
    environ[SYS_PATH_ENV] = json.dumps(sys.path)
    return [sys.executable, *interpreter_flags(), "-c", code], environ
