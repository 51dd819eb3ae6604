"""The same site in a unittest-style suite: ``python manage.py test tests --pattern "unittest_*.py"``
(run from example_projects/django_site). Django's runner creates its usual in-memory SQLite
test database; SharedsockLiveServerTestCase copies it to a file for the class's workers."""

from __future__ import annotations

import json
import os
import urllib.request

from guestbook.models import Entry

from sharedsock.testing.django_live import SharedsockLiveServerTestCase


class GuestbookLiveTests(SharedsockLiveServerTestCase):
    def test_an_entry_saved_by_the_test_is_served_by_a_worker(self):
        Entry.objects.create(name="Lin", message="unittest style")
        with urllib.request.urlopen(self.live_server_url + "/api/entries/", timeout=30) as reply:
            document = json.loads(reply.read())
        self.assertEqual(document["count"], 1)
        self.assertIn(document["pid"], self.live_server.pids)
        method = os.environ.get("SHAREDSOCK_START_METHOD", "fork")
        self.assertIn(f"Start method: {method}, 2 worker(s)", self.live_server.log)

    def test_every_test_starts_empty(self):
        with urllib.request.urlopen(self.live_server_url + "/api/entries/", timeout=30) as reply:
            self.assertEqual(json.loads(reply.read())["count"], 0)
