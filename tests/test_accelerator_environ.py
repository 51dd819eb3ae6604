"""The compiled environ builder gives the same environ as the Python one, key for key, in order.

Every head the conformance samples produce, a table of targets and header sets
chosen for the rules (percent escapes, fragments, absolute form, ``--root-path``,
repeated fields, ``_`` in names, Host), and random mutations of both, go
through ``wsgi.python_build_environ`` (the definition, and what
SHAREDSOCK_PURE_PYTHON=1 runs) and the C ``build_environ``.
"""

from __future__ import annotations

import random

import pytest
import test_accelerator

from sharedsock import speedups, wsgi
from sharedsock.http.parser import HEAD, Limits, RequestHead, RequestParser
from sharedsock.wsgi import base_environ

pytestmark = pytest.mark.usefixtures("_needs_the_accelerator")
_needs_the_accelerator = test_accelerator._needs_the_accelerator

BASES = [base_environ("127.0.0.1", "8000", "", False, True),
         base_environ("example.org", "443", "/app", True, False),
         base_environ("", "", "", False, True)]  # a Unix socket
ROOT_PATHS = ["", "/static", "/app", "/a/b", "/é"]
PEERS = [("127.0.0.1", "50000"), ("", "")]

TARGETS = [b"/", b"/x", b"/x?", b"/x?a=1&b=2", b"/?q", b"/static", b"/static/", b"/static/app.js",
           b"/staticfile", b"/app?x=/app", b"/%41%42", b"/a%2Fb?c=%20", b"/a%zz%4", b"/a#frag",
           b"/a?b#c", b"/a?b%20c", b"/\xe9t\xe9?\xff", b"http://h.example:81/p?q=1",
           b"http://user@h/p", b"https://h", b"h.example:443", b"*", b"//double", b"/a;b=c",
           b"/\xe9", b"/a%C3%A9"]
HEADER_SETS: list[list[tuple[bytes, bytes]]] = [
    [],
    [(b"Host", b"127.0.0.1:8000")],
    [(b"Host", b"")],
    [(b"Host", b"[::1]:8080"), (b"Accept", b"*/*")],
    [(b"host", b"Example.COM"), (b"HOST", b"second")],
    [(b"Cookie", b"a=1"), (b"cookie", b"b=2"), (b"COOKIE", b"c=3")],
    [(b"Accept", b"text/html"), (b"accept", b"*/*")],
    [(b"Content-Type", b"text/plain"), (b"content-type", b"application/json")],
    [(b"Content-Length", b"5"), (b"CONTENT-LENGTH", b"6")],
    [(b"X_Forwarded_For", b"1.2.3.4"), (b"X-Forwarded-For", b"5.6.7.8")],
    [(b"X-Latin", b"caf\xe9 \xff"), (b"X-Empty", b"")],
    [(b"Referer", b"https://e/"), (b"User-Agent", b"curl/8"), (b"Connection", b"keep-alive")],
]


def head_of(method: str, target: bytes, version: str, headers: list[tuple[bytes, bytes]]) -> RequestHead:
    return RequestHead(method, target, version, headers, True, None, False, False, False)


def both(head: RequestHead, base: dict, peer: tuple[str, str], root_path: str) -> tuple[list, list]:
    args = (head, base, peer[0], peer[1], root_path)
    return list(wsgi.build_environ(*args).items()), list(wsgi.python_build_environ(*args).items())


def test_the_compiled_builder_is_the_one_in_use():
    assert wsgi.build_environ is speedups.compiled.build_environ
    assert wsgi.build_environ is not wsgi.python_build_environ


def test_every_sample_head_gives_the_same_environ():
    compared = 0
    for _, raw, limits in test_accelerator.SAMPLES + [("common", raw, Limits()) for raw in
                                                        test_accelerator.COMMON]:
        for kind, head in RequestParser(limits).feed(raw):
            if kind != HEAD:
                continue
            for base in BASES:
                for root_path in ROOT_PATHS:
                    compiled, python = both(head, base, PEERS[0], root_path)
                    assert compiled == python, raw
                    compared += 1
    assert compared > 500


@pytest.mark.parametrize("target", TARGETS)
def test_targets_and_header_sets_give_the_same_environ(target):
    for headers in HEADER_SETS:
        for version in ("1.1", "1.0"):
            head = head_of("GET", target, version, headers)
            for base in BASES:
                for peer in PEERS:
                    for root_path in ROOT_PATHS:
                        compiled, python = both(head, base, peer, root_path)
                        assert compiled == python, (target, headers, root_path)


def test_repeated_fields_are_joined_and_underscored_names_dropped():
    headers = [(b"Cookie", b"a=1"), (b"Cookie", b"b=2"), (b"Accept", b"x"), (b"Accept", b"y"),
               (b"X_Secret", b"no"), (b"Host", b"h.example:81")]
    environ = wsgi.build_environ(head_of("GET", b"/p?q", "1.1", headers), BASES[0], "1.2.3.4", "9", "")
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["HTTP_ACCEPT"] == "x, y"
    assert "HTTP_X_SECRET" not in environ
    assert (environ["SERVER_NAME"], environ["PATH_INFO"], environ["QUERY_STRING"]) == ("h.example", "/p", "q")


_TARGET_BYTES = [b"/", b"?", b"#", b"%", b"%2", b"%41", b"%zz", b"a", b"static", b"app", b"\xe9", b"\xff",
                 b"://", b"@", b":", b"*", b";", b"="]
_NAMES = [b"Host", b"host", b"Cookie", b"Accept", b"Content-Type", b"content-length", b"X_A", b"X-A",
          b"x-a", b"Te", b"A", b"X-\xe9"]
_VALUES = [b"", b"v", b"a b", b"\xe9\xff", b"[::1]:1", b"h:80", b"h", b"H.Example"]


def test_random_heads_give_the_same_environ():
    rng = random.Random(3333)
    for _ in range(20000):
        target = b"".join(rng.choice(_TARGET_BYTES) for _ in range(rng.randint(0, 6)))
        if rng.random() < 0.7:
            target = b"/" + target
        headers = [(rng.choice(_NAMES), rng.choice(_VALUES)) for _ in range(rng.randint(0, 5))]
        head = head_of(rng.choice(["GET", "POST"]), target, rng.choice(["1.1", "1.0"]), headers)
        compiled, python = both(head, rng.choice(BASES), rng.choice(PEERS), rng.choice(ROOT_PATHS))
        assert compiled == python, (target, headers)


def test_the_shared_caches_still_agree_once_they_are_cleared():
    """Past their size limits the caches are emptied (by the Python helpers the C code calls)."""
    for i in range(2100):
        headers = [(b"X-Name-%d" % i, b"v"), (b"Host", b"host%d.example:1" % i)]
        compiled, python = both(head_of("GET", b"/", "1.1", headers), BASES[0], PEERS[0], "")
        assert compiled == python
    assert len(wsgi._HEADER_KEYS) <= 2049 and len(wsgi._SERVER_NAMES) <= 1025


def test_keyword_calls_give_the_same_environ():
    head = head_of("GET", b"/static/x?y", "1.1", [(b"Host", b"h")])
    assert wsgi.build_environ(head, BASES[0], "a", "1", root_path="/static") == \
        wsgi.python_build_environ(head, BASES[0], "a", "1", "/static")
    with pytest.raises(TypeError):
        wsgi.build_environ(head, BASES[0], "a", "1", colour="")


def test_bad_arguments_raise_instead_of_crashing():
    build = speedups.compiled.build_environ
    head = head_of("GET", b"/", "1.1", [(b"Host", b"h")])
    with pytest.raises(TypeError):
        build(head, BASES[0], "a", "b")
    with pytest.raises(AttributeError):
        build(object(), BASES[0], "a", "b", "")
    with pytest.raises(TypeError):
        build(head_of("GET", b"/", "1.1", [(b"Host", "text")]), BASES[0], "a", "b", "")
    with pytest.raises(TypeError):
        speedups.compiled.environ_setup({}, None, {}, None, None)


class Head(RequestHead):
    __slots__ = ()


def test_heads_read_from_their_slots_or_asked_give_the_same_environ():
    headers = [(b"Host", b"h.example"), (b"Cookie", b"a=1"), (b"Cookie", b"b=2")]
    sub = Head("POST", b"/p?q=1", "1.0", headers, True, None, False, False, False)
    compiled, python = both(sub, BASES[0], PEERS[0], "")
    assert compiled == python
    for name in ("method", "target", "version", "headers"):
        unset = head_of("GET", b"/", "1.1", [(b"Host", b"h")])
        delattr(unset, name)
        with pytest.raises(AttributeError, match=name):
            wsgi.build_environ(unset, BASES[0], "a", "1", "")


def test_a_request_fills_its_environ_without_growing_its_table():
    """A dict that grows reallocates and rehashes its table: once per request, before."""
    import sys

    headers = [(b"Host", b"h"), (b"User-Agent", b"Mozilla/5.0"), (b"Accept", b"text/html"),
               (b"Accept-Language", b"en"), (b"Accept-Encoding", b"gzip"), (b"Cookie", b"a=1"),
               (b"Referer", b"https://h/"), (b"Connection", b"keep-alive"), (b"Cache-Control", b"no-cache"),
               (b"Upgrade-Insecure-Requests", b"1"), (b"Sec-Fetch-Mode", b"navigate")]
    for base in BASES + [wsgi.with_room({**BASES[0], "HTTPS": "on"})]:
        environ = wsgi.build_environ(head_of("GET", b"/a?b=c", "1.1", headers), base, "1.2.3.4", "5", "")
        environ["wsgi.input"] = None
        for extra in ("werkzeug.request", "flask.app", "x.y"):  # what a framework adds
            environ[extra] = None
        assert sys.getsizeof(environ) == sys.getsizeof(base), len(environ)
        assert list(environ)[:len(base)] == list(base)


def test_roomy_dict_copies_in_order_and_refuses_bad_arguments():
    source = {"b": 1, "a": 2, 3: "c"}
    roomy = speedups.compiled.roomy_dict(source, 10)
    assert list(roomy.items()) == list(source.items()) and roomy is not source
    with pytest.raises(TypeError):
        speedups.compiled.roomy_dict([("a", 1)], 1)
    with pytest.raises(ValueError):
        speedups.compiled.roomy_dict({}, -1)
    with pytest.raises(TypeError):
        speedups.compiled.roomy_dict({})


def test_pure_python_forced_uses_the_python_builder():
    code = "import sharedsock.wsgi as w; print(w.build_environ is w.python_build_environ)"
    assert test_accelerator.python_prints(code, SHAREDSOCK_PURE_PYTHON="1") == "True"
