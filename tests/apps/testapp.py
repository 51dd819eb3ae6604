"""WSGI apps the engine and protocol tests serve. Each response names the worker's pid."""

import os
import sys
import threading
import time


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/slow":
        print(f"slow request started in {os.getpid()}", file=sys.stderr, flush=True)
        time.sleep(float(environ.get("QUERY_STRING") or "1"))
    elif path == "/hang":
        while True:
            time.sleep(0.1)
    elif path == "/crash":
        os._exit(13)
    elif path == "/error":
        raise RuntimeError("boom from the test app")
    elif path == "/alloc":  # a large buffer built per request, as a rendered page or JSON is
        size = int(environ.get("QUERY_STRING") or "1048576")
        body = b"x" * size
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(size))])
        return [body]
    body = f"pid={os.getpid()} path={path} thread={threading.current_thread().name}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def create_app(greeting="hello", **kwargs):
    def factory_app(environ, start_response):
        body = f"{greeting} pid={os.getpid()}\n".encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
    return factory_app


not_callable = 42
