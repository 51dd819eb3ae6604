"""The JSON API: list, read and create notes; a status document naming the worker."""

from __future__ import annotations

import os

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import HTTPException

from . import db

bp = Blueprint("api", __name__)


@bp.get("/status")
def status():
    from .pages import TAGLINE

    return {"status": "ok", "pid": os.getpid(), "tagline": TAGLINE,
            "notes": len(db.list_notes())}


@bp.get("/notes")
def list_notes():
    return jsonify(db.list_notes())


@bp.get("/notes/<int:note_id>")
def get_note(note_id: int):
    note = db.get_note(note_id)
    if note is None:
        return {"error": f"no note {note_id}"}, 404
    return note


@bp.post("/notes")
def create_note():
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not str(data.get("title", "")).strip():
        return {"error": "send a JSON object with a non-empty 'title'"}, 400
    note = db.add_note(str(data["title"]).strip(), str(data.get("body", "")))
    return note, 201, {"Location": f"/api/notes/{note['id']}"}


@bp.errorhandler(HTTPException)
def json_error(exc: HTTPException):
    return {"error": exc.description}, exc.code
