"""Behaviour of the example Django site, in-process through WebTest (real WSGI, CSRF enforced).

Django can be configured once per process and pytest runs every test module
in one process, so the site is set up inside a module fixture (never at import
time), on a temporary SQLite file, and the environment is restored afterwards.
The server itself is tested end to end in test_django_runshared.py.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

SITE = Path(__file__).resolve().parent.parent / "example_projects" / "django_site"
SETTINGS = "exampleproject.settings"
pytestmark = pytest.mark.smoke  # also run on every Python and framework version of .ci/run


@pytest.fixture(scope="module")
def django_site(tmp_path_factory):
    """The example site's settings, on a migrated temporary database, with one superuser."""
    import django
    from django.conf import settings

    if settings.configured and settings.SETTINGS_MODULE != SETTINGS:
        pytest.fail(f"Django is already configured in this process with {settings.SETTINGS_MODULE!r}")
    saved_env = dict(os.environ)
    db = tmp_path_factory.mktemp("django_site") / "db.sqlite3"
    os.environ.update(DJANGO_SETTINGS_MODULE=SETTINGS, EXAMPLE_SITE_DB=str(db), EXAMPLE_SITE_DEBUG="0")
    added_path = str(SITE) not in sys.path
    if added_path:
        sys.path.insert(0, str(SITE))
    try:
        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        assert settings.DATABASES["default"]["NAME"] == str(db)
        call_command("migrate", verbosity=0)
        get_user_model().objects.create_superuser("admin", "admin@example.com", "correct horse")
        yield settings
    finally:
        from django.db import connections

        connections.close_all()
        os.environ.clear()
        os.environ.update(saved_env)
        if added_path:
            sys.path.remove(str(SITE))


@pytest.fixture
def app(django_site):
    import webtest
    from django.core.wsgi import get_wsgi_application
    from guestbook.models import Entry

    Entry.objects.all().delete()
    return webtest.TestApp(get_wsgi_application(), extra_environ={"HTTP_HOST": "localhost"})


def test_home_page_shows_form_title_and_serving_pid(app):
    page = app.get("/")
    assert page.status_int == 200
    assert "<h1>sharedsock guestbook</h1>" in page.text
    assert f"pid={os.getpid()}" in page.text
    assert page.headers["X-Served-By"] == str(os.getpid())
    assert 'href="/static/guestbook/site.css"' in page.text
    assert "No entries yet." in page.text


def test_signing_the_guestbook_posts_with_csrf_and_redirects(app):
    form = app.get("/").forms[0]
    form["name"] = "Ada"
    form["message"] = "Shared sockets, separate processes."
    response = form.submit()
    assert response.status_int == 302
    assert response.headers["Location"] == "/"
    page = response.follow()
    assert "<strong>Ada</strong> Shared sockets, separate processes." in page.text


def test_post_without_csrf_token_is_refused(app):
    from guestbook.models import Entry

    response = app.post("/", {"name": "Mallory", "message": "no token"}, status=403)
    assert "CSRF" in response.text
    assert not Entry.objects.exists()


def test_invalid_entry_is_shown_again_with_errors(app):
    from guestbook.models import Entry

    form = app.get("/").forms[0]
    form["name"] = ""
    form["message"] = "who am I?"
    page = form.submit()
    assert page.status_int == 200
    assert "This field is required." in page.text
    assert "who am I?" in page.text  # the visitor's text is kept
    assert not Entry.objects.exists()


def test_json_view_lists_newest_entries_first(app):
    from guestbook.models import Entry

    Entry.objects.create(name="first", message="one")
    Entry.objects.create(name="second", message="two")
    response = app.get("/api/entries/")
    assert response.content_type == "application/json"
    data = json.loads(response.text)
    assert data["count"] == 2
    assert [e["name"] for e in data["entries"]] == ["second", "first"]
    assert data["pid"] == os.getpid()
    assert data["greeting"] == "Welcome"


def test_json_view_refuses_post_even_with_a_csrf_token(app):
    token = app.get("/").forms[0]["csrfmiddlewaretoken"].value
    app.post("/api/entries/", headers={"X-CSRFToken": token}, status=405)


def test_admin_login_and_entry_changelist(app):
    from guestbook.models import Entry

    entry = Entry.objects.create(name="Grace", message="admin can see me")
    login = app.get("/admin/login/")
    assert login.status_int == 200
    assert "admin/css/base.css" in login.text
    form = login.forms["login-form"]
    form["username"] = "admin"
    form["password"] = "correct horse"
    index = form.submit().follow()
    assert "Entries" in index.text
    changelist = app.get("/admin/guestbook/entry/")
    # The name column of list_display links to the entry; Django 4.2 shows __str__ nowhere else.
    assert f'<a href="/admin/guestbook/entry/{entry.pk}/change/">Grace</a>' in changelist.text


def test_admin_requires_login(app):
    response = app.get("/admin/guestbook/entry/")
    assert response.status_int == 302
    assert response.headers["Location"].startswith("/admin/login/")


def test_loader_serves_static_files_only_when_asked(django_site, tmp_path):
    """loader.load is what each worker calls; DEBUG is off here, so only --insecure serves static."""
    import webtest

    from sharedsock.integrations.django.loader import load

    saved = os.environ.get("DJANGO_SETTINGS_MODULE")
    try:
        forced = webtest.TestApp(load(settings=SETTINGS, static="force"),
                                 extra_environ={"HTTP_HOST": "localhost"})
        css = forced.get("/static/guestbook/site.css")
        assert css.content_type == "text/css"
        assert b".greeting" in css.body
        for mode in ("auto", "off"):
            plain = webtest.TestApp(load(settings=SETTINGS, static=mode),
                                    extra_environ={"HTTP_HOST": "localhost"})
            plain.get("/static/guestbook/site.css", status=404)
        with pytest.raises(ValueError):
            load(settings=SETTINGS, static="sometimes")
    finally:
        os.environ["DJANGO_SETTINGS_MODULE"] = saved or SETTINGS
