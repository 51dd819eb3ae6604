"""The app the TLS tests serve: it reports what the environ says about the connection."""

import json
import os
import sys
import tempfile
import time


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/file":  # wsgi.file_wrapper: sendfile on plain HTTP, read and sent over TLS
        size = int(environ.get("QUERY_STRING") or "300000")
        f = tempfile.TemporaryFile()
        f.write(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
        f.seek(0)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        return environ["wsgi.file_wrapper"](f, 65536)
    if path == "/big":
        size = int(environ.get("QUERY_STRING") or "1048576")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(size))])
        return [b"y" * size]
    if path == "/sleep":
        print(f"sleep started in {os.getpid()}", file=sys.stderr, flush=True)
        time.sleep(float(environ.get("QUERY_STRING") or "1"))
    if path == "/echo":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    data = {key: environ.get(key) for key in ("wsgi.url_scheme", "HTTPS", "SSL_CLIENT_S_DN",
                                              "REMOTE_ADDR", "SERVER_PORT")}
    data["pid"] = os.getpid()
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
