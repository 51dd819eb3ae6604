"""The pytest plugin as a user meets it: test sessions run by ``pytester`` in a fresh
interpreter, where the plugin is loaded once, through its entry point (never ``-p`` as well),
against real servers."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

WSGI_APP = """
    import os

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/error":
            raise RuntimeError("boom in the inner test's app")
        body = f"pid={os.getpid()}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
"""

# A shopping cart kept in a module-level dict: one process's memory. Reading the cart sleeps a
# little, so that concurrent readers are served at the same time (by two workers, if there are).
CART_APP = """
    import json, os, time

    CARTS = {}

    def app(environ, start_response):
        if environ["REQUEST_METHOD"] == "POST":
            CARTS.setdefault("me", []).append(environ["QUERY_STRING"])
            items = CARTS["me"]
        else:
            time.sleep(0.3)
            items = CARTS.get("me", [])
        body = json.dumps({"pid": os.getpid(), "items": items}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
"""

CART_TEST = """
    import json, threading, urllib.request
    from concurrent.futures import ThreadPoolExecutor

    import pytest
    from werkzeug.serving import make_server

    import cart


    @pytest.fixture
    def werkzeug_url():
        server = make_server("127.0.0.1", 0, cart.app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_port}"
        server.shutdown()


    @pytest.fixture(params=["werkzeug", "sharedsock"])
    def base_url(request):
        if request.param == "werkzeug":
            return request.getfixturevalue("werkzeug_url")
        return request.getfixturevalue("sharedsock_server")("cart:app", workers=2).url


    def read_cart(url):
        with urllib.request.urlopen(url + "/cart", timeout=30) as reply:
            return json.loads(reply.read())


    def test_the_cart_keeps_what_was_added(base_url):
        urllib.request.urlopen(base_url + "/cart?milk", data=b"", timeout=30).close()
        with ThreadPoolExecutor(4) as pool:
            carts = list(pool.map(read_cart, [base_url] * 4))
        assert [c["items"] for c in carts] == [["milk"]] * 4, carts
"""


@pytest.fixture
def inner(pytester):
    """A project directory with a WSGI app module, run in a subprocess session."""
    pytester.makepyfile(wsgi_app=textwrap.dedent(WSGI_APP))

    def run(test: str, *args: str) -> pytest.RunResult:
        pytester.makepyfile(test_inner=textwrap.dedent(test))
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=600)

    return run


def test_the_plugin_is_loaded_once_and_can_be_turned_off(inner):
    result = inner("""
        def test_loaded_once(request):
            plugin = request.config.pluginmanager.get_plugin("sharedsock")
            assert plugin.__name__ == "sharedsock.pytest_plugin"
            names = [name for name, p in request.config.pluginmanager.list_name_plugin() if p is plugin]
            assert names == ["sharedsock"]
    """)
    result.assert_outcomes(passed=1)
    result = inner("def test_uses_it(sharedsock_server):\n    pass\n", "-p", "no:sharedsock")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'sharedsock_server' not found*"])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_failing_test_report_carries_the_server_log(inner, method):
    result = inner("""
        def test_fails_after_a_request(sharedsock_server):
            server = sharedsock_server("wsgi_app:app")
            assert server.get("/").status == 200
            assert False, "the test's own failure"
    """, "--sharedsock-start-method", method)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*AssertionError: the test's own failure*",
        "*- sharedsock server log (http://127.0.0.1:*) -*",
        f"*Start method: {method}, 2 worker(s)*",
        "*Booted worker*",
    ])


def test_an_error_the_server_logged_fails_the_test_at_teardown(inner):
    result = inner("""
        def test_app_raises(sharedsock_server):
            server = sharedsock_server("wsgi_app:app")
            assert server.get("/error").status == 500

        def test_app_raises_on_purpose(sharedsock_server):
            server = sharedsock_server("wsgi_app:app", allow_errors=True)
            assert server.get("/error").status == 500
    """)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_app_raises*",
        "*the server logged: * error handling GET /error*",
        "*- sharedsock server log (http://127.0.0.1:*) -*",
        "*RuntimeError: boom in the inner test's app*",
    ])


def test_scope_is_the_callers_choice(inner):
    result = inner("""
        import pytest

        @pytest.fixture(scope="module")
        def server(sharedsock_server_module):
            return sharedsock_server_module("wsgi_app:app", workers=1)

        @pytest.fixture(scope="session")
        def session_server(sharedsock_server_session):
            return sharedsock_server_session("wsgi_app:app", workers=1)

        MASTERS = []

        @pytest.mark.parametrize("round", [1, 2])
        def test_one_server_for_the_module(server, session_server, round):
            MASTERS.append((server.master_pid, session_server.master_pid))
            assert server.get("/").status == 200
            assert len(set(MASTERS)) == 1 and server.master_pid != session_server.master_pid
    """)
    result.assert_outcomes(passed=2)


def test_the_command_line_sets_every_servers_start_method_and_workers(inner):
    result = inner("""
        def test_spawned(sharedsock_server):
            server = sharedsock_server("wsgi_app:app")
            assert server.options["start_method"] == "spawn" and len(server.pids) == 3
            assert "Start method: spawn, 3 worker(s)" in server.log

        def test_an_explicit_choice_wins(sharedsock_server):
            assert len(sharedsock_server("wsgi_app:app", workers=1).pids) == 1
    """, "--sharedsock-start-method", "spawn", "--sharedsock-workers", "3")
    result.assert_outcomes(passed=2)


def test_state_in_a_module_dict_passes_under_werkzeug_and_fails_under_two_workers(inner, pytester):
    """The dev server is one process, so memory looks shared; production's workers are not."""
    pytester.makepyfile(cart=textwrap.dedent(CART_APP))
    result = inner(CART_TEST, "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_the_cart_keeps_what_was_added?werkzeug? PASSED*",
                                 "*test_the_cart_keeps_what_was_added?sharedsock? FAILED*"])
    assert "'items': []" in result.stdout.str()  # a worker that never saw the POST


def test_live_server_serves_the_flask_app_fixture_drop_in(inner):
    result = inner("""
        import urllib.request

        import pytest
        from flask import Flask


        @pytest.fixture
        def app():
            app = Flask("inner")

            @app.get("/hello")
            def hello():
                return "hello from a worker"

            return app


        def test_pytest_flask_style(live_server):
            with urllib.request.urlopen(live_server.url("/hello"), timeout=30) as reply:
                assert reply.read() == b"hello from a worker"
            assert str(live_server) == live_server.url and len(live_server.pids) == 2


        def test_webtest_over_http(sharedsock_webtest):
            page = sharedsock_webtest.get("/hello")
            assert page.text == "hello from a worker"
            sharedsock_webtest.get("/missing", status=404)
    """)
    result.assert_outcomes(passed=2)


def test_live_server_without_an_app_or_django_says_what_it_needs(inner):
    result = inner("def test_it(live_server):\n    pass\n")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*define an `app` fixture*DJANGO_SETTINGS_MODULE*"])


def test_an_in_process_session_leaves_the_defaults_as_it_found_them(pytester):
    from sharedsock.testing import live

    before = dict(live._DEFAULTS)
    pytester.makepyfile(test_inner="def test_nothing():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--sharedsock-workers", "5",
                                          "--sharedsock-start-method", "spawn")
    result.assert_outcomes(passed=1)
    assert live._DEFAULTS == before
