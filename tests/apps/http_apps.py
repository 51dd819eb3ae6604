"""Apps for the HTTP and WSGI suites.

``app`` is wrapped in ``wsgiref.validate.validator`` so every route is also
checked against PEP 3333; any complaint lands in the server log as an
AssertionError, and the suites assert there is none. ``raw_app`` serves the
routes the validator cannot wrap (file wrappers, deliberate protocol abuse).
"""

import hashlib
import io
import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs
from wsgiref.validate import validator

_lock = threading.Lock()
_in_app = 0
_max_in_app = 0
TEXT = [("Content-Type", "text/plain")]


def _query(environ) -> dict:
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _json(start_response, data, status="200 OK"):
    body = json.dumps(data, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _read_all(stream, size=8192):
    parts = []
    while True:
        data = stream.read(size)
        if not data:
            return b"".join(parts)
        parts.append(data)


class Closing:
    """An iterable whose close() the server must call; it says so in the log."""

    def __init__(self, name, parts):
        self.name = name
        self.parts = parts

    def __iter__(self):
        return iter(self.parts)

    def close(self):
        print(f"closed {self.name} in {os.getpid()}", file=sys.stderr, flush=True)


def _environ_view(environ):
    out = {k: v for k, v in environ.items() if isinstance(v, str)}
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "wsgi.input_terminated",
                "wsgi.version"):
        out[key] = environ.get(key)
    out["has_file_wrapper"] = callable(environ.get("wsgi.file_wrapper"))
    return out


def _hold(environ, start_response):
    """Block until the test creates the file named in ?release=, counting apps running at once."""
    global _in_app, _max_in_app
    q = _query(environ)
    with _lock:
        _in_app += 1
        _max_in_app = max(_max_in_app, _in_app)
    print(f"hold {q.get('id')} entered", file=sys.stderr, flush=True)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(q["release"]) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        with _lock:
            _in_app -= 1
    return _json(start_response, {"max": _max_in_app, "id": q.get("id")})


def routes(environ, start_response):
    path = environ["PATH_INFO"]
    q = _query(environ)
    stream = environ["wsgi.input"]
    if path == "/environ" or path.startswith("/environ/"):
        return _json(start_response, _environ_view(environ))
    if path == "/echo":
        body = _read_all(stream, int(q.get("size", "8192")))
        start_response("200 OK", TEXT + [("Content-Length", str(len(body)))])
        return [body]
    if path == "/echo-lines":
        how = q.get("how", "readline")
        if how == "readlines":
            lines = stream.readlines()
        elif how == "iter":
            lines = list(stream)
        else:
            lines = []
            while True:
                line = stream.readline()
                if not line:
                    break
                lines.append(line)
        return _json(start_response, [line.decode("latin-1") for line in lines])
    if path == "/digest":
        digest, length = hashlib.sha256(), 0
        while True:
            data = stream.read(65536)
            if not data:
                break
            digest.update(data)
            length += len(data)
        return _json(start_response, {"len": length, "sha": digest.hexdigest()})
    if path == "/read-some":
        data = stream.read(int(q.get("n", "1")))
        start_response("200 OK", TEXT + [("Content-Length", str(len(data)))])
        return [data]
    if path == "/noread":
        start_response("200 OK", TEXT + [("Content-Length", "7")])
        return [b"ignored"]
    if path == "/noread-big":
        body = b"r" * (8 << 20)
        start_response("200 OK", TEXT + [("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        n = int(q.get("n", "3"))
        start_response("200 OK", TEXT)
        return (b"part%d;" % i for i in range(n))
    if path == "/write":
        write = start_response("200 OK", TEXT)
        write(b"written;")
        return [b"returned"]
    if path == "/status":
        code = q.get("code", "200")
        if code in ("204", "304"):
            start_response(f"{code} Whatever", [("ETag", '"x"')])
            return [b"should not be sent"]
        start_response(f"{code} Whatever", TEXT)
        return [b"body"]
    if path == "/headers":
        start_response("200 OK", TEXT + [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                                         ("Content-Length", "2")])
        return [b"ok"]
    if path == "/app-close":
        start_response("200 OK", TEXT + [("Content-Length", "2"), ("Connection", "close")])
        return [b"ok"]
    if path == "/closing":
        start_response("200 OK", TEXT)
        return Closing(q.get("name", "closing"), [b"a", b"b"])
    if path == "/error":
        raise RuntimeError("boom before the response")
    if path == "/error-after":
        start_response("200 OK", TEXT)
        return _fail_after()
    if path == "/exc-info":
        start_response("200 OK", TEXT)
        try:
            raise ValueError("handled by the app")
        except ValueError:
            start_response("503 Service Unavailable", TEXT + [("Content-Length", "4")], sys.exc_info())
        return [b"sorry"[:4]]
    if path == "/hold":
        return _hold(environ, start_response)
    if path == "/errors":
        environ["wsgi.errors"].write("message to wsgi.errors\n")
        environ["wsgi.errors"].writelines(["second line\n"])
        environ["wsgi.errors"].flush()
        start_response("200 OK", TEXT + [("Content-Length", "2")])
        return [b"ok"]
    if path == "/form":
        from webob import Request
        request = Request(environ)
        fields = {k: (v.filename + ":" + v.file.read().decode()) if hasattr(v, "filename") else v
                  for k, v in request.POST.items()}
        body = json.dumps({"fields": fields, "cookies": dict(request.cookies)}, sort_keys=True).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Set-Cookie", "visit=1; Path=/"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/big":
        return _big(start_response, int(q.get("mb", "64")))
    start_response("404 Not Found", TEXT + [("Content-Length", "9")])
    return [b"not found"]


def _fail_after():
    yield b"first part;"
    raise RuntimeError("boom after the response started")


def _big(start_response, mb):
    start_response("200 OK", TEXT + [("Content-Length", str(mb << 20))])
    block = b"x" * (1 << 20)

    class Big:
        def __iter__(self):
            for _ in range(mb):
                yield block

        def close(self):
            print(f"closed big in {os.getpid()}", file=sys.stderr, flush=True)

    return Big()


app = validator(routes)


def raw_app(environ, start_response):
    """Routes that break or bypass the validator on purpose."""
    path = environ["PATH_INFO"]
    q = _query(environ)
    if path == "/file":
        f = open(q["path"], "rb")
        f.seek(int(q.get("offset", "0")))
        headers = TEXT + ([("Content-Length", q["length"])] if "length" in q else [])
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 8192)
    if path == "/filelike":
        start_response("200 OK", TEXT)
        return environ["wsgi.file_wrapper"](io.BytesIO(b"from a file-like object"), 4)
    if path == "/too-long":
        start_response("200 OK", TEXT + [("Content-Length", "5")])
        return Closing("too-long", [b"12345", b"67890"])
    if path == "/too-long-at-once":
        start_response("200 OK", TEXT + [("Content-Length", "5")])
        return [b"1234567890"]
    if path == "/too-short":
        start_response("200 OK", TEXT + [("Content-Length", "10")])
        return Closing("too-short", [b"12345"])
    if path == "/bad-header":
        kind = q.get("kind")
        headers = {
            "crlf": [("X-Bad", "a\r\nInjected: yes")],
            "nul": [("X-Bad", "a\0b")],
            "hop": [("Transfer-Encoding", "chunked")],
            "bytes": [(b"X-Bytes", b"v")],
            "name": [("X Bad", "v")],
        }[kind]
        start_response("200 OK", TEXT + headers)
        return [b"should never be sent"]
    if path == "/bad-status":
        start_response(b"200 OK", TEXT)
        return [b"never"]
    if path == "/twice":
        start_response("200 OK", TEXT)
        start_response("200 OK", TEXT)
        return [b"never"]
    if path == "/exc-after-head":
        start_response("200 OK", TEXT)
        yield_first = [b"started;"]

        def gen():
            yield yield_first[0]
            try:
                raise KeyError("late")
            except KeyError:
                start_response("500 Internal Server Error", TEXT, sys.exc_info())
            yield b"never"
        return gen()
    if path == "/str-body":
        start_response("200 OK", TEXT)
        return ["text, not bytes"]
    if path == "/swallow-body-error":
        try:
            environ["wsgi.input"].read()
        except Exception as exc:  # an app that hides the server's error must not win
            print(f"swallowed {type(exc).__name__}", file=sys.stderr, flush=True)
        start_response("200 OK", TEXT + [("Content-Length", "2")])
        return [b"ok"]
    return app(environ, start_response)
