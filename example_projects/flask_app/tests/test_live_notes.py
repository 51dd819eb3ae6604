"""The notes app behind a real sharedsock server: two worker processes, real HTTP.

What a single-process dev server cannot show: that the SQLite database, the uploads and
the signed session cookie are shared by every worker, whichever one answers.
"""

from __future__ import annotations

import http.cookiejar
import json
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def served_by_every_worker(live_server, path: str) -> dict[int, dict]:
    """GET ``path`` (a JSON document with the serving ``pid``) until each worker has answered."""
    seen: dict[int, dict] = {}
    # Two requests at a time: a worker that just answered one client can take the next
    # itself before its sibling wakes, but not while it is busy with another.
    with ThreadPoolExecutor(2) as pool:
        for _ in range(200):
            for page in pool.map(live_server.get, [path, path]):
                document = page.json()
                seen[document["pid"]] = document
            if set(seen) >= set(live_server.pids):
                return seen
    raise AssertionError(f"only workers {sorted(seen)} of {live_server.pids} answered")


def test_the_workers_serve_the_app(live_server):
    assert len(live_server.pids) == live_server.options["workers"]  # 2 unless --sharedsock-workers
    page = live_server.get("/")
    assert page.status == 200
    assert "No notes yet." in page.text
    assert page.headers["Server"] == "sharedsock"


def test_a_note_created_through_one_worker_is_seen_by_every_worker(live_server):
    body = json.dumps({"title": "shared", "body": "in SQLite"}).encode()
    created = live_server.request("/api/notes", data=body, headers={"Content-Type": "application/json"})
    assert created.status == 201
    for document in served_by_every_worker(live_server, "/api/status").values():
        assert document["notes"] == 1


def test_flash_message_survives_the_redirect_whichever_worker_answers(live_server):
    """The session cookie is signed by one worker and read by another: the key must match."""
    for i in range(6):
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        form = urllib.parse.urlencode({"title": f"note {i}", "body": "x"}).encode()
        with opener.open(live_server.url("/notes"), data=form, timeout=30) as page:  # follows the 303
            assert f"Added “note {i}”." in page.read().decode()


def test_forms_and_uploads_through_webtest_over_http(sharedsock_webtest):
    page = sharedsock_webtest.get("/")
    form = page.forms[0]
    form["title"] = "Buy milk"
    form["body"] = "two litres"
    page = form.submit().follow()
    assert "Buy milk" in page.text and "Added “Buy milk”." in page.text
    upload = page.forms[1]
    upload["file"] = ("report.txt", b"quarterly numbers\n")
    page = upload.submit().follow()
    assert "report.txt" in page.text
    assert sharedsock_webtest.get("/uploads/report.txt").body == b"quarterly numbers\n"
    sharedsock_webtest.post("/notes", {"title": " "}, status=400)


def test_a_crashed_worker_is_replaced_and_the_app_keeps_answering(live_server):
    killed = live_server.kill_worker()
    assert killed not in live_server.pids and len(live_server.pids) == live_server.options["workers"]
    assert live_server.get("/api/notes").json() == []


def test_reload_starts_new_workers_on_the_same_port(live_server):
    port, before = live_server.port, list(live_server.pids)
    after = live_server.reload()
    assert set(after).isdisjoint(before) and live_server.port == port
    assert live_server.get("/worker").status == 200
