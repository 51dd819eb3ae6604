"""The compiled head scanner changes speed, never behaviour.

Every conformance sample of the parser, RFC 9112 and reject suites, and tens of
thousands of random mutations of them, go through the parser with the scanner and
without it (the llhttp path, as with SHAREDSOCK_PURE_PYTHON=1): the events, heads,
bodies and refusals (status and reason) must be the same. CI sets
REQUIRE_SHAREDSOCK_ACCELERATOR=1, so there a missing build fails instead of skipping.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
import test_http_rejects
import test_parser
import test_rfc9112

from sharedsock import speedups
from sharedsock.errors import ProtocolError
from sharedsock.http import parser as http_parser
from sharedsock.http.parser import DATA, ERROR, HEAD, Limits, RequestHead, RequestParser
from sharedsock.http.records import ResponsePlan

GOOD = b"GET /first HTTP/1.1\r\nHost: example\r\n\r\n"
AFTER = b"GET /after HTTP/1.1\r\nHost: example\r\n\r\n"

# (name, raw, limits)
SAMPLES = (
    [(n, raw, Limits()) for n, raw, _ in test_parser.VALID]
    + [(n, raw, Limits()) for n, raw, _ in test_parser.INVALID]
    + [(n, raw, test_parser.SMALL) for n, raw, _ in test_parser.LIMITED]
    + [(n, raw, Limits()) for n, raw in test_rfc9112.SERVED]
    + [(n, raw, Limits()) for n, raw, _ in test_rfc9112.VALID_HEADS]
    + [(n, raw, Limits()) for n, raw, _ in test_rfc9112.REFUSED]
    + [(n, raw, Limits()) for n, raw, _ in test_rfc9112.REFUSED_AT_ONCE]
    + [(n, raw, Limits()) for n, raw, _ in test_http_rejects.MALFORMED]
    + [(n, raw, Limits()) for n, raw in test_http_rejects.SMUGGLING]
)

# What browsers, curl, wrk, proxies and the test clients send: the scanner must take these.
COMMON = [
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n",
    b"GET /static/app.css?v=3 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux"
    b" x86_64) AppleWebKit/537.36\r\nAccept: text/css,*/*;q=0.1\r\nAccept-Encoding: gzip, deflate,"
    b" br\r\nAccept-Language: en-GB,en;q=0.9\r\nCookie: a=1; session=xyz\r\nReferer: https://example"
    b".com/\r\nConnection: keep-alive\r\n\r\n",
    b"POST /api/items HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: 7\r\n"
    b"\r\n{\"a\":1}",
    b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"HEAD /health HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\n"
    b"Connection: close\r\n\r\n",
    b"DELETE /items/7 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer abc.def\r\n\r\n",
]


@pytest.fixture(autouse=True)
def _needs_the_accelerator():
    if speedups.ACCELERATED:
        return
    if os.environ.get("REQUIRE_SHAREDSOCK_ACCELERATOR") == "1":
        pytest.fail(f"REQUIRE_SHAREDSOCK_ACCELERATOR=1 but {speedups.describe()}")
    pytest.skip(f"nothing to compare: {speedups.describe()}")


def events(raw: bytes, limits: Limits, compiled: bool, pieces: int = 1) -> list:
    """Everything the parser produces for ``raw``, in comparable form."""
    saved = http_parser._scan_head
    if not compiled:
        http_parser._scan_head = None
    try:
        parser = RequestParser(limits)
        out: list = []
        size = max(1, -(-len(raw) // pieces))
        for i in range(0, len(raw), size):
            for kind, payload in parser.feed(raw[i:i + size]):
                if kind == HEAD:
                    out.append((HEAD, payload.method, payload.target, payload.version,
                                list(payload.headers), payload.keep_alive, payload.content_length,
                                payload.chunked, payload.expect_continue, payload.upgrade,
                                payload.has_body))
                elif kind == DATA:
                    out.append((DATA, bytes(payload)))
                elif kind == ERROR:
                    assert isinstance(payload, ProtocolError)
                    out.append((ERROR, payload.status, payload.reason))
                else:
                    out.append((kind,))
        out.append(("access log", parser.request_line_environ() if parser.failed else None))
        return out
    finally:
        http_parser._scan_head = saved


@pytest.mark.parametrize("name, raw, limits", SAMPLES, ids=[s[0] for s in SAMPLES])
def test_every_sample_parses_the_same_on_both_paths(name, raw, limits):
    for stream in (raw, GOOD + raw + AFTER, raw + AFTER + AFTER):
        assert events(stream, limits, True) == events(stream, limits, False)


@pytest.mark.parametrize("raw", COMMON)
def test_the_scanner_takes_common_requests(raw):
    parser = RequestParser()
    assert parser.feed(raw)
    assert parser._scanned is not None, "the scanner declined, so the llhttp path served it"
    assert events(raw, Limits(), True) == events(raw, Limits(), False)


_INTERESTING = [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b",", b"\x00", b"\x7f", b"\xe9", b"#", b"%",
                b"Host: x\r\n", b"Host: a b\r\n", b"Content-Length: 5\r\n", b"Content-Length: 99\r\n",
                b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n", b"Connection: Upgrade\r\n",
                b"Upgrade: h2c\r\n", b"Expect: 100-continue\r\n", b"HTTP/1.0", b"HTTP/1.1", b"0\r\n\r\n"]


def _mutate(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(data))
        choice = rng.random()
        if choice < 0.3 and data:
            del data[at:at + rng.randint(1, 3)]
        elif choice < 0.6:
            data[at:at] = rng.choice(_INTERESTING)
        elif data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
    return bytes(data)


def test_random_mutations_parse_the_same_on_both_paths():
    rng = random.Random(9112)
    seeds = [raw for _, raw, _ in SAMPLES] + COMMON
    small = Limits(request_line=64, request_fields=6, request_field_size=64, request_body=100)
    compared = taken = 0
    for _ in range(25000):
        raw = _mutate(rng, rng.choice(seeds))
        limits = small if rng.random() < 0.25 else Limits()
        compiled = events(raw, limits, True)
        assert compiled == events(raw, limits, False), raw
        compared += 1
        taken += compiled[0][0] == HEAD if compiled else 0
    assert compared == 25000 and taken > 1000  # the scanner was really exercised


def test_llhttp_is_made_only_for_a_head_the_scanner_leaves_to_it():
    """Making one costs a new connection about an eighth of its instructions."""
    parser = RequestParser()
    assert [kind for kind, _ in parser.feed(GOOD + AFTER)] == [HEAD, http_parser.END] * 2
    assert parser._parser is None
    parser.feed(b"GET /x HTTP/1.1\r\nHost: example\r\nX: \x80\r\n\r\n")  # not in the scanner's grammar
    assert parser._parser is not None


def test_bad_arguments_are_refused_not_read_past():
    scan = speedups.scan_head
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with pytest.raises(TypeError):
        scan(bytearray(head), len(head), 8190, 100, 8190, 0)
    with pytest.raises(ValueError):
        scan(head, len(head) + 1, 8190, 100, 8190, 0)
    with pytest.raises(ValueError):
        scan(head, -1, 8190, 100, 8190, 0)
    with pytest.raises(ValueError):
        scan(head, len(head), 8190, 100, 8190, -1)
    with pytest.raises(TypeError):
        scan(head, len(head))
    assert scan(head, len(head) - 1, 8190, 100, 8190, 0) is None  # not ending with CRLF CRLF
    scanned = scan(head, len(head), 8190, 100, 8190, 0)
    assert type(scanned) is RequestHead
    assert (scanned.method, scanned.target, scanned.version, scanned.has_body) == ("GET", b"/", "1.1", False)


def scanned(raw: bytes, body_limit: int = 0) -> RequestHead | None:
    return speedups.scan_head(raw, raw.index(b"\r\n\r\n") + 4, 8190, 100, 8190, body_limit)


def test_the_scanner_leaves_the_parsers_own_refusals_to_llhttp():
    """No Host in HTTP/1.1, a bad Host, a body over the limit: llhttp's path refuses those."""
    assert scanned(b"GET / HTTP/1.1\r\n\r\n") is None
    assert scanned(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n") is None
    assert scanned(b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n") is None
    post = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n"
    assert scanned(post, 10) is None
    assert scanned(post, 11).content_length == 11
    assert scanned(post, 0).has_body is True
    old = scanned(b"GET / HTTP/1.0\r\n\r\n")  # HTTP/1.0 needs no Host
    assert (old.version, old.keep_alive, old.has_body) == ("1.0", False, False)
    assert scanned(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive is True
    assert scanned(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").keep_alive is False


class TwoFields:
    __slots__ = ("method", "target")


class Extended(RequestHead):
    __slots__ = ("extra",)


@pytest.mark.parametrize("cls", [TwoFields, Extended, dict])
def test_a_head_class_the_extension_cannot_fill_is_refused(cls):
    """A field added to RequestHead in Python alone must stop the build being used, not be left unset."""
    with pytest.raises(TypeError):
        speedups.compiled.head_setup(cls, {}, http_parser.valid_host)
    assert type(scanned(GOOD)) is RequestHead  # the refused setup changed nothing


def python_prints(code: str, **env: str) -> str:
    """What ``code`` prints in a fresh interpreter, with ``env`` added to the environment."""
    result = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env),
                            capture_output=True, text=True, check=True, timeout=60)
    return result.stdout.strip()


def test_pure_python_can_be_forced():
    code = "import sharedsock.speedups as s; print(s.ACCELERATED, s.describe())"
    assert python_prints(code, SHAREDSOCK_PURE_PYTHON="1") == \
        "False pure Python (SHAREDSOCK_PURE_PYTHON is set)"


def test_an_extension_built_from_older_sources_is_left_unused():
    """A source tree updated without a rebuild keeps its old .so: one without the newer
    functions is not used at all (the start line says why), rather than half used."""
    code = (
        "import sys, types\n"
        "old = types.ModuleType('sharedsock._speedups')\n"
        "old.scan_head = lambda *args: None  # all the first release of the extension had\n"
        "sys.modules['sharedsock._speedups'] = old\n"
        "import sharedsock.speedups as s, sharedsock.wsgi as w, sharedsock.http.response as r\n"
        "print(s.ACCELERATED, s.describe())\n"
        "print(w.build_environ is w.python_build_environ, r.render_head is r.python_render_head)\n"
    )
    assert python_prints(code).splitlines() == [
        "False pure Python (the compiled accelerator is out of date: reinstall to rebuild it)",
        "True True"]


@pytest.mark.parametrize("record", ["RequestHead", "ResponsePlan"])
def test_an_extension_filling_other_slots_is_left_unused(record):
    """A field added to a record in Python alone, the extension not rebuilt: the server
    runs in pure Python and says why, instead of failing at import with a traceback."""
    code = (
        "import sharedsock.http.records as records\n"
        f"old = records.{record}\n"
        f"class {record}:\n"
        "    __slots__ = old.__slots__ + ('added',)\n"
        f"records.{record} = {record}\n"
        "import sharedsock.speedups as s, sharedsock.wsgi as w, sharedsock.http.response as r\n"
        "import sharedsock.http.parser as p\n"
        "print(s.ACCELERATED, s.describe())\n"
        "print(w.build_environ is w.python_build_environ, r.render_head is r.python_render_head)\n"
    )
    assert python_prints(code).splitlines() == [
        "False pure Python (the compiled accelerator is out of date: reinstall to rebuild it)",
        "True True"]


def test_the_extension_publishes_the_slots_it_fills():
    assert speedups.compiled.REQUEST_HEAD_SLOTS == RequestHead.__slots__
    assert speedups.compiled.RESPONSE_PLAN_SLOTS == ResponsePlan.__slots__
