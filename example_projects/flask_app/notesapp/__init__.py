"""A small notes app: the example ``flask runshared`` serves.

It uses what real Flask apps use (an application factory, blueprints, Jinja
templates, a JSON API, form posts, file uploads, static files, SQLite) so
the integration is tested against them rather than against a toy.

Configuration comes from ``create_app(test_config)`` or from ``NOTES_*``
environment variables (``NOTES_DATA_DIR=/tmp/notes`` puts the database and the
uploads there; values are parsed as JSON when they can be).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        # Every worker must sign sessions with the same key, or a flash message
        # set by one worker is unreadable in the next; set NOTES_SECRET_KEY in production.
        SECRET_KEY="dev-only-change-me",
        DATA_DIR=app.instance_path,
        MAX_CONTENT_LENGTH=4 * 1024 * 1024,
        # Defaults for `flask runshared`; the command line and the environment win.
        SHAREDSOCK={"server_header": "notesapp", "max_requests": 10000, "max_requests_jitter": 1000},
    )
    app.config.from_prefixed_env("NOTES")
    if test_config:
        app.config.update(test_config)
    app.config.setdefault("DATABASE", os.path.join(app.config["DATA_DIR"], "notes.sqlite3"))
    app.config.setdefault("UPLOAD_FOLDER", os.path.join(app.config["DATA_DIR"], "uploads"))
    os.makedirs(app.config["UPLOAD_FOLDER"], exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(app.config["DATABASE"])), exist_ok=True)

    from . import api, db, pages

    db.init_app(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp, url_prefix="/api")
    return app
