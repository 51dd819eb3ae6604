"""An app whose answers the request-metrics test can count: 200, 404, a body echoed, a crash."""

import os


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/error":
        raise RuntimeError("boom from the metrics app")
    if path == "/echo":
        body = environ["wsgi.input"].read()
        status = "200 OK"
    elif path == "/":
        body = f"pid={os.getpid()}\n".encode()
        status = "200 OK"
    else:
        body = f"pid={os.getpid()} not found\n".encode()
        status = "404 Not Found"
    start_response(status, [("Content-Type", "text/plain"), ("X-Pid", str(os.getpid())),
                            ("Content-Length", str(len(body)))])
    return [body]
