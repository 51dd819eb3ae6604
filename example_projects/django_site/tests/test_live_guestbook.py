"""The guestbook behind a real sharedsock server: two workers, the test database, real HTTP."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor


def test_entries_written_by_the_test_are_served_by_the_workers(live_server):
    from guestbook.models import Entry

    Entry.objects.create(name="Ada", message="from the test process")
    seen = set()
    # Two requests at a time: a worker that just answered one client can take the next
    # itself before its sibling wakes, but not while it is busy with another.
    with ThreadPoolExecutor(2) as pool:
        for _ in range(200):
            for page in pool.map(live_server.get, ["/", "/"]):
                assert page.status == 200 and "from the test process" in page.text
                seen.add(int(page.headers["X-Served-By"]))
            if seen >= set(live_server.pids):
                break
    assert seen == set(live_server.pids) and os.getpid() not in seen


def test_signing_over_http_with_csrf_writes_to_the_test_database(sharedsock_webtest):
    from guestbook.models import Entry

    form = sharedsock_webtest.get("/").forms[0]
    form["name"] = "Grace"
    form["message"] = "Signed through a real worker."
    page = form.submit().follow()
    assert "Signed through a real worker." in page.text
    assert list(Entry.objects.values_list("name", flat=True)) == ["Grace"]


def test_each_test_starts_from_an_empty_database(live_server):
    assert live_server.get("/api/entries/").json()["count"] == 0


def test_a_post_without_the_csrf_token_is_refused(live_server):
    assert live_server.request("/", data=b"name=x&message=y").status == 403


def test_the_admin_login_page(live_server):
    assert live_server.get("/admin/login/").status == 200
