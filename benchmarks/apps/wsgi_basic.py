"""Plain WSGI apps, no framework: each scenario gets its own callable so no
routing code runs that the scenario does not need. Every server is pointed at
exactly the same callable (``wsgi_basic:hello`` and so on)."""

import os
import time

HELLO = b"Hello, World!\n"
BIG = b"x" * (1 << 20)  # 1 MiB, built once at import time
PLAIN = "text/plain; charset=utf-8"


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", PLAIN), ("Content-Length", "14")])
    return [HELLO]


def pid(environ, start_response):
    """Names the worker process that answered: the fairness runs count these."""
    body = f"pid={os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", PLAIN), ("Content-Length", str(len(body)))])
    return [body]


def sleep10(environ, start_response):
    """Stands in for a 10 ms database call: the thread blocks, the GIL is released."""
    time.sleep(0.010)
    start_response("200 OK", [("Content-Type", PLAIN), ("Content-Length", "3")])
    return [b"ok\n"]


def big(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(BIG)))])
    return [BIG]


def consume(environ, start_response):
    """Reads the whole request body (in 64 KiB reads) and answers with its size."""
    stream = environ["wsgi.input"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    received = 0
    while received < length:
        chunk = stream.read(min(65536, length - received))
        if not chunk:
            break
        received += len(chunk)
    body = f"received {received} bytes\n".encode()
    start_response("200 OK", [("Content-Type", PLAIN), ("Content-Length", str(len(body)))])
    return [body]
