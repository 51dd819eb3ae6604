"""Builds the project's WSGI app inside a worker: after fork, or in a spawned interpreter.

The master never imports the project (see ``handover``), so each worker
generation imports the code that is on disk when it starts. That is what lets
``--reload`` and SIGHUP serve edited views, models and settings.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

LOADER = "sharedsock.integrations.django.loader:load"
STATIC_MODES = ("auto", "force", "off")


def load(settings: str, pythonpath: Sequence[str] = (), static: str = "auto") -> Callable[..., Any]:
    """Set up Django from ``settings`` and return ``settings.WSGI_APPLICATION``.

    ``settings`` and ``pythonpath`` arrive as arguments rather than through the
    inherited environment so that ``--settings`` and ``--pythonpath`` reach a
    spawned worker exactly as they reached ``manage.py``. ``static`` is
    ``auto`` (serve static files when DEBUG is on, like runserver), ``force``
    (``--insecure``) or ``off`` (``--nostatic``).
    """
    if static not in STATIC_MODES:
        raise ValueError(f"static must be one of {STATIC_MODES}, got {static!r}")
    os.environ["DJANGO_SETTINGS_MODULE"] = settings
    for path in reversed(pythonpath):
        if path not in sys.path:
            sys.path.insert(0, path)

    import django
    from django.core.exceptions import ImproperlyConfigured
    from django.core.servers.basehttp import get_internal_wsgi_application

    django.setup(set_prefix=False)  # the handler sets the script prefix per request
    try:
        app = get_internal_wsgi_application()
    except ImproperlyConfigured as exc:
        # Django wraps the import error in a generic message; the cause (say a
        # SyntaxError with its file name) is what the user and --reload need.
        if exc.__cause__ is not None:
            raise exc.__cause__ from None
        raise
    _import_urlconf()
    if _serves_static(static):
        from django.contrib.staticfiles.handlers import StaticFilesHandler

        app = StaticFilesHandler(app)
    return app


def _import_urlconf() -> None:
    """Import the root URLconf, and through it every view, before the worker reports ready.

    Django would otherwise import them on the first request. Importing them
    here turns a broken view into a load error: on a reload the previous
    workers keep serving and the broken file is watched, instead of a new
    generation answering 500. It also spares the first visitor the wait.
    """
    from django.urls import get_resolver

    _ = get_resolver().url_patterns  # resolving them imports every view


def _serves_static(static: str) -> bool:
    """runserver's rule, decided in the worker so an edit of DEBUG takes effect on reload."""
    if static == "off":
        return False
    from django.apps import apps
    from django.conf import settings

    if not apps.is_installed("django.contrib.staticfiles"):
        return False
    return static == "force" or bool(settings.DEBUG)
