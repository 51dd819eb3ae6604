"""HTML pages: the notes list, a form post, file uploads, and which worker served you."""

from __future__ import annotations

import os

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from werkzeug.utils import secure_filename

from . import db

bp = Blueprint("pages", __name__)

TAGLINE = "Notes, served by sharedsock"


@bp.get("/")
def index():
    return render_template("index.html", tagline=TAGLINE, notes=db.list_notes(),
                           uploads=db.list_uploads(), pid=os.getpid())


@bp.post("/notes")
def add_note():
    title = request.form.get("title", "").strip()
    body = request.form.get("body", "").strip()
    if not title:
        return render_template("index.html", tagline=TAGLINE, notes=db.list_notes(),
                               uploads=db.list_uploads(), pid=os.getpid(),
                               error="A note needs a title."), 400
    db.add_note(title, body)
    flash(f"Added “{title}”.")
    return redirect(url_for("pages.index"), code=303)


@bp.post("/uploads")
def upload():
    file = request.files.get("file")
    filename = secure_filename(file.filename or "") if file else ""
    if not filename:
        abort(400, "choose a file to upload")
    path = os.path.join(current_app.config["UPLOAD_FOLDER"], filename)
    file.save(path)
    db.record_upload(filename, os.path.getsize(path))
    flash(f"Uploaded {filename}.")
    return redirect(url_for("pages.index"), code=303)


@bp.get("/uploads/<path:filename>")
def uploaded(filename: str):
    return send_from_directory(current_app.config["UPLOAD_FOLDER"], filename)


@bp.get("/worker")
def worker():
    return render_template("worker.html", tagline=TAGLINE, pid=os.getpid())
