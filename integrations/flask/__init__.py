"""Flask integration: ``flask runshared`` serves a Flask app with sharedsock.

The command finds the app exactly like ``flask run`` (``--app``, ``FLASK_APP``,
``.flaskenv``/``.env``, ``wsgi.py``/``app.py``) because it hands the import
string to Flask's own ``ScriptInfo`` inside each worker.

Flask is an optional dependency of sharedsock. Importing this package
without it must say how to fix that, not show a bare ``No module named
'flask'`` from deep inside a worker.
"""

try:
    import flask as _flask
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "sharedsock.integrations.flask needs Flask, which could not be imported "
        f"({exc}); install it with: pip install 'sharedsock[flask]'"
    ) from exc

del _flask
