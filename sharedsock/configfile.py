"""Reading a Python config file (``sharedsock.conf.py``): option values and hook functions.

The file is plain Python, like ``gunicorn.conf.py``: ``workers = 4`` sets an
option, ``def post_fork(server, worker): ...`` defines a hook. Every other
public name is a mistake until proven otherwise (``wrokers = 4`` must not
pass silently), so it is an error naming the closest option or hook. What a
config file legitimately holds besides that is ignored: names starting with
``_`` (helpers), modules, and names bound by ``import`` statements (a hook
imported from a module is still a hook).

A file is executed once per process (the front end resolving the options and
the master that needs its hooks are often the same process).
"""

from __future__ import annotations

import ast
import difflib
import inspect
import os
import traceback
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .config import OPTIONS_BY_NAME
from .errors import ConfigError

DEFAULT_FILE = "sharedsock.conf.py"

# Hook name -> its parameters, in the order they are passed. The README documents each.
HOOK_PARAMETERS: dict[str, tuple[str, ...]] = {
    "on_starting": ("server",),
    "when_ready": ("server",),
    "pre_fork": ("server", "worker"),
    "post_fork": ("server", "worker"),
    "post_worker_init": ("worker",),
    "pre_request": ("worker", "environ"),
    "post_request": ("worker", "environ", "status"),
    "worker_exit": ("server", "worker"),
    "on_reload": ("server",),
    "on_exit": ("server",),
}

# Options that make no sense inside the file itself.
_NOT_IN_FILE = {"config": "the config file cannot name another config file"}


@dataclass(frozen=True)
class ConfigFile:
    path: str
    values: Mapping[str, Any]  # option name -> raw value, checked later by build_config
    hooks: Mapping[str, Callable[..., Any]]

    @property
    def source(self) -> str:
        """How ``build_config`` names this layer in error messages."""
        return f"config file {self.path}"


_cache: dict[str, tuple[tuple[int, int], ConfigFile]] = {}


def find_config_file(*given: tuple[str, str | None]) -> str | None:
    """The file to read: the first ``(label, path)`` given (already absolute, or ``""`` for none),
    else ``./sharedsock.conf.py`` if it exists. A path given but missing is a ConfigError."""
    for label, path in given:
        if path is None:
            continue
        if path == "":
            return None
        if not os.path.isfile(path):
            why = "is a directory" if os.path.isdir(path) else "no such file"
            raise ConfigError(f"{label} {path}: {why}")
        return path
    default = os.path.abspath(DEFAULT_FILE)
    return default if os.path.isfile(default) else None


def read_config_file(path: str) -> ConfigFile:
    """Execute the file (once per version of it) and sort its names into options and hooks."""
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            source = f.read()
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    namespace = _execute(path, source)
    result = _classify(path, namespace, _imported_names(source))
    _cache[path] = (stamp, result)
    return result


def _execute(path: str, source: bytes) -> dict[str, Any]:
    try:
        code = compile(source, path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise ConfigError(f"{path}:{exc.lineno or 0}: syntax error: {exc.msg}") from None
    module = types.ModuleType("sharedsock_config")
    module.__file__ = path
    namespace = module.__dict__
    try:
        exec(code, namespace)
    except Exception as exc:
        line = _line_in(path, exc)
        where = f"{path}:{line}" if line else path
        raise ConfigError(f"{where}: {type(exc).__name__}: {exc}") from None
    return namespace


def _line_in(path: str, exc: BaseException) -> int | None:
    """The last line of ``path`` the traceback passed through: where the file went wrong."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == path:
            found = frame.lineno
    return found


def _imported_names(source: bytes) -> set[str]:
    """Names bound by ``import`` statements anywhere at module level (also inside if/try)."""
    names: set[str] = set()
    tree = ast.parse(source)
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, (ast.If, ast.Try, ast.With)) or type(node).__name__ == "TryStar":
            for field in ("body", "orelse", "finalbody", "handlers"):
                pending.extend(getattr(node, field, []) or [])
        elif isinstance(node, ast.ExceptHandler):
            pending.extend(node.body)
    return names


def _classify(path: str, namespace: Mapping[str, Any], imported: set[str]) -> ConfigFile:
    values: dict[str, Any] = {}
    hooks: dict[str, Callable[..., Any]] = {}
    for name, value in namespace.items():
        if name in HOOK_PARAMETERS and not name.startswith("_"):  # also when imported from a module
            if value is not None:
                hooks[name] = _check_hook(path, name, value)
        elif name.startswith("_") or name in imported or isinstance(value, types.ModuleType):
            continue
        elif name in OPTIONS_BY_NAME:
            if name in _NOT_IN_FILE:
                raise ConfigError(f"config file {path}: option {name!r}: {_NOT_IN_FILE[name]}")
            values[name] = value
        else:
            raise ConfigError(f"config file {path}: {name!r} is not an option or a hook{_hint(name)}")
    return ConfigFile(path, values, hooks)


def _hint(name: str) -> str:
    known = sorted(set(OPTIONS_BY_NAME) - set(_NOT_IN_FILE) | set(HOOK_PARAMETERS))
    guess = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if guess:
        return f"; did you mean {guess[0]!r}?"
    return "; name helpers with a leading underscore"


def _check_hook(path: str, name: str, value: Any) -> Callable[..., Any]:
    """A hook must be callable with its documented arguments: found now, not at the first fork."""
    params = HOOK_PARAMETERS[name]
    signature = f"{name}({', '.join(params)})"
    if not callable(value):
        raise ConfigError(f"config file {path}: hook {signature} must be a function, "
                          f"got {type(value).__name__}")
    try:
        inspect.signature(value).bind(*params)
    except TypeError as exc:
        raise ConfigError(f"config file {path}: hook {signature} cannot take its "
                          f"{len(params)} argument(s): {exc}") from None
    except ValueError:
        pass  # no signature to inspect (some builtins): find out when it is called
    return value
