"""How a worker gets its WSGI app.

A spawned worker is a fresh interpreter, so it cannot be handed the master's
app object: it gets a *loader* (an import path to a function) and JSON-able
arguments, and builds the app itself. Forked workers may instead inherit a
callable. Loading in the worker, not the master, is also what lets a reload
pick up new code.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import AppLoadError, ConfigError
from .frames import library_prefixes  # noqa: F401 - the master imports it from here

DEFAULT_LOADER = "sharedsock.appspec:load_target"


@dataclass(frozen=True)
class AppSpec:
    """Either ``app`` (a callable, fork only) or ``loader`` + ``args`` (any start method)."""

    loader: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    app: Callable | None = None
    name: str = "app"

    @classmethod
    def from_target(cls, target: str) -> AppSpec:
        parse_target(target)  # syntax errors are configuration errors, raised before anything starts
        return cls(loader=DEFAULT_LOADER, args={"target": target}, name=target)

    @classmethod
    def from_callable(cls, app: Callable) -> AppSpec:
        if not callable(app):
            raise ConfigError(f"the app must be a WSGI callable or an import string, got {app!r}")
        name = getattr(app, "__qualname__", None) or type(app).__name__
        module = getattr(app, "__module__", None)
        return cls(app=app, name=f"{module}:{name}" if module else name)

    def to_dict(self) -> dict[str, Any]:
        if self.loader is None:
            raise ConfigError("an app object cannot be sent to a spawned worker; pass an import "
                              "string such as 'package.module:app', or use --start-method fork")
        return {"loader": self.loader, "args": self.args, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppSpec:
        return cls(loader=data["loader"], args=data["args"], name=data["name"])

    def load(self) -> Callable:
        if self.app is not None:
            return self.app
        assert self.loader is not None
        loader = import_object(self.loader)
        return loader(**self.args)


def import_object(path: str) -> Any:
    """``package.module:attribute.path`` -> the object (used for loaders, which are ours)."""
    module_name, _, attr = path.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Target:
    module: str
    attribute: str | None
    call_args: tuple | None  # None: not a call; () or (args...) for "factory(...)"
    call_kwargs: dict[str, Any] | None


def parse_target(target: str) -> Target:
    """Parse ``pkg.mod``, ``pkg.mod:app`` or ``pkg.mod:create_app('x', debug=True)``."""
    if not isinstance(target, str) or not target.strip():
        raise ConfigError("no app given: expected MODULE:APP, e.g. myproject.wsgi:application")
    module, sep, rest = target.strip().partition(":")
    if not module or not all(p.isidentifier() for p in module.split(".")):
        raise ConfigError(f"invalid app target {target!r}: {module!r} is not a module name")
    if not sep:
        return Target(module, None, None, None)
    try:
        expr = ast.parse(rest.strip(), mode="eval").body
    except SyntaxError:
        raise ConfigError(f"invalid app target {target!r}: cannot parse {rest!r}") from None
    if isinstance(expr, ast.Name):
        return Target(module, expr.id, None, None)
    if isinstance(expr, ast.Attribute):
        return Target(module, ast.unparse(expr), None, None)
    if isinstance(expr, ast.Call) and isinstance(expr.func, (ast.Name, ast.Attribute)):
        try:
            args = tuple(ast.literal_eval(a) for a in expr.args)
            kwargs = {k.arg: ast.literal_eval(k.value) for k in expr.keywords if k.arg}
        except ValueError:
            raise ConfigError(f"invalid app target {target!r}: factory arguments must be "
                              "Python literals") from None
        if any(k.arg is None for k in expr.keywords):
            raise ConfigError(f"invalid app target {target!r}: **kwargs is not supported")
        return Target(module, ast.unparse(expr.func), args, kwargs)
    raise ConfigError(f"invalid app target {target!r}: expected a name or a call such as "
                      "create_app()")


def load_target(target: str) -> Callable:
    """The default loader: import the module named by ``target`` and find the WSGI callable."""
    spec = parse_target(target)
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if exc.name and (spec.module == exc.name or spec.module.startswith(exc.name + ".")):
            raise AppLoadError(not_found_message(spec.module, exc.name)) from None
        raise
    if spec.attribute is None:
        for name in ("application", "app"):
            if hasattr(module, name):
                obj = getattr(module, name)
                break
        else:
            raise AppLoadError(f"module {spec.module!r} has no 'application' or 'app'; "
                               f"name the app as {spec.module}:NAME")
        attr_name = name
    else:
        obj = module
        for part in spec.attribute.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise AppLoadError(f"module {spec.module!r} has no attribute "
                                   f"{spec.attribute!r}") from None
        attr_name = spec.attribute
    if spec.call_args is not None:
        if not callable(obj):
            raise AppLoadError(f"{spec.module}:{attr_name} is not callable, cannot call it")
        obj = obj(*spec.call_args, **(spec.call_kwargs or {}))
        attr_name += "()"
    if not callable(obj):
        raise AppLoadError(f"{spec.module}:{attr_name} is not a WSGI callable "
                           f"(got {type(obj).__name__})")
    return obj


def not_found_message(module: str, missing: str) -> str:
    return (f"cannot import {module!r}: no module named {missing!r} on the Python path (run from "
            "the directory that contains it, or add that directory to PYTHONPATH)")


def check_importable(target: str) -> None:
    """Raise AppLoadError now if the target's module is certainly not on ``sys.path``.

    Run in the master before binding, so a mistyped module or a wrong working directory is
    one line before any "Listening at". The module is only *found*, never imported (the
    master must not hold the app's code); anything uncertain is left to the workers.
    """
    module = parse_target(target).module
    missing = _first_missing(module)
    if missing is not None:
        raise AppLoadError(not_found_message(module, missing))


def _first_missing(module: str) -> str | None:
    """The first dotted prefix of ``module`` that no import finder knows, or None."""
    parts = module.split(".")
    search_path: list[str] | None = None
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        last = i + 1 == len(parts)
        loaded = sys.modules.get(name)
        if loaded is not None:
            if last:
                return None
            search_path = getattr(loaded, "__path__", None)
            if search_path is None:
                return None
            continue
        try:
            found = _find(name, search_path)
        except Exception:
            return None
        if found is None:
            return name
        if last:
            return None
        if found.submodule_search_locations is None or _may_change_its_path(found):
            return None  # not a package, or one that finds its submodules only once it runs
        search_path = list(found.submodule_search_locations)
    return None


def _find(name: str, search_path: list[str] | None) -> Any:
    if search_path is None:
        return importlib.util.find_spec(name)  # a top-level name: finds, executes nothing
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        spec = find_spec(name, search_path) if find_spec is not None else None
        if spec is not None:
            return spec
    return None


def _may_change_its_path(spec: Any) -> bool:
    """A package whose ``__init__`` edits ``__path__`` (pkgutil.extend_path) finds submodules
    only once it has run, so its absence from a static search proves nothing."""
    origin = getattr(spec, "origin", None)
    if not origin or not origin.endswith(".py"):
        return False
    try:
        with open(origin, encoding="utf-8", errors="replace") as f:
            return "__path__" in f.read()
    except OSError:
        return True


def loaded_module_files() -> list[str]:
    """Source files of every imported module: what ``--reload`` watches."""
    files = []
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and isinstance(path, str):
            files.append(path)
    return files


def file_stamps(paths: list[str]) -> dict[str, float]:
    """Each file's mtime as this process sees it now (-1 if it is gone).

    A worker sends these with its file list, so ``--reload`` compares later
    edits with what the worker loaded, not with what the files looked like
    when the master got round to reading the list: an edit in between would
    otherwise become the baseline and never trigger a reload.
    """
    stamps = {}
    for path in paths:
        try:
            stamps[path] = os.stat(path).st_mtime
        except OSError:
            stamps[path] = -1.0
    return stamps
