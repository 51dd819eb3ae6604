"""The example Flask app's behaviour, driven in-process with WebTest (no server).

These pin down what the end-to-end tests then check through sharedsock: pages
render, forms post, uploads round-trip, the JSON API answers, SQLite lives
where the configuration says.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from webtest import TestApp

EXAMPLE = Path(__file__).resolve().parent.parent / "example_projects" / "flask_app"
pytestmark = pytest.mark.smoke  # also run on every Python and framework version of .ci/run


@pytest.fixture
def notesapp(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    import notesapp

    return notesapp


@pytest.fixture
def app(notesapp, tmp_path):
    return notesapp.create_app({"DATA_DIR": str(tmp_path), "TESTING": True,
                                "DATABASE": str(tmp_path / "notes.sqlite3"),
                                "UPLOAD_FOLDER": str(tmp_path / "uploads")})


@pytest.fixture
def client(app):
    return TestApp(app)


def test_database_is_created_on_first_run(app, tmp_path):
    with sqlite3.connect(tmp_path / "notes.sqlite3") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"note", "upload"} <= tables


def _init_at_barrier(path: str, barrier, errors) -> None:
    from notesapp.db import init_db

    barrier.wait()
    try:
        init_db(path)
    except Exception as exc:
        errors.put(repr(exc))


def test_workers_starting_together_all_create_the_database(notesapp, tmp_path):
    """Eight workers booting at once on a fresh file: none fails with "database is locked"."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    errors = context.SimpleQueue()
    for round_ in range(20):
        path = str(tmp_path / f"fresh-{round_}.sqlite3")
        barrier = context.Barrier(8)
        workers = [context.Process(target=_init_at_barrier, args=(path, barrier, errors))
                   for _ in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
            assert worker.exitcode == 0
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    with sqlite3.connect(tmp_path / "fresh-0.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_data_dir_comes_from_the_environment(notesapp, tmp_path, monkeypatch):
    monkeypatch.setenv("NOTES_DATA_DIR", str(tmp_path / "from-env"))
    app = notesapp.create_app()
    assert app.config["DATABASE"] == str(tmp_path / "from-env" / "notes.sqlite3")
    assert (tmp_path / "from-env" / "notes.sqlite3").is_file()
    assert (tmp_path / "from-env" / "uploads").is_dir()


def test_sharedsock_defaults_live_in_the_app_config(app):
    assert app.config["SHAREDSOCK"]["server_header"] == "notesapp"


def test_index_renders_the_template_with_the_worker_pid(client):
    page = client.get("/")
    assert page.status_int == 200
    assert page.content_type == "text/html"
    assert "No notes yet." in page.text
    assert f"pid={os.getpid()}" in page.text
    assert page.html.find("link", rel="stylesheet")["href"] == "/static/style.css"


def test_form_post_adds_a_note_and_redirects(client):
    form = client.get("/").forms[0]
    form["title"] = "Buy milk"
    form["body"] = "two litres"
    response = form.submit()
    assert response.status_int == 303
    page = response.follow()
    assert "Buy milk" in page.text and "two litres" in page.text
    assert "Added “Buy milk”." in page.text  # the flash message survived the redirect


def test_form_post_without_title_is_a_400(client):
    page = client.post("/notes", {"title": "  "}, status=400)
    assert "A note needs a title." in page.text


def test_upload_round_trip(client):
    form = client.get("/").forms[1]
    form["file"] = ("../report.txt", b"quarterly numbers\n")
    page = form.submit().follow()
    assert "report.txt" in page.text and "(18 bytes)" in page.text
    download = client.get("/uploads/report.txt")
    assert download.body == b"quarterly numbers\n"


def test_upload_without_file_is_a_400(client):
    client.post("/uploads", {}, status=400)


def test_static_files(client):
    css = client.get("/static/style.css")
    assert css.content_type == "text/css"
    assert b"notesapp" in css.body


def test_json_api(client):
    assert client.get("/api/notes").json == []
    created = client.post_json("/api/notes", {"title": "API note", "body": "hi"}, status=201)
    note = created.json
    assert note["title"] == "API note" and note["body"] == "hi"
    assert created.headers["Location"] == f"/api/notes/{note['id']}"
    assert client.get(f"/api/notes/{note['id']}").json["title"] == "API note"
    assert [n["title"] for n in client.get("/api/notes").json] == ["API note"]
    status = client.get("/api/status").json
    assert status["status"] == "ok" and status["notes"] == 1 and status["pid"] == os.getpid()


def test_json_api_errors_are_json(client):
    assert client.get("/api/notes/999", status=404).json == {"error": "no note 999"}
    assert "title" in client.post_json("/api/notes", {"body": "x"}, status=400).json["error"]
    assert client.post("/api/notes", "not json", status=400).json["error"]


def test_worker_page_names_the_process(client):
    assert f"pid={os.getpid()}" in client.get("/worker").text


def test_large_uploads_are_refused(client):
    client.post("/uploads", upload_files=[("file", "big.bin", b"x" * (5 * 1024 * 1024))], status=413)
