"""Every request keeps 16 MiB more alive: a leak, for --max-worker-memory."""

import os

_kept = []


def app(environ, start_response):
    if environ["PATH_INFO"] == "/grow":
        _kept.append(bytearray(16 << 20))
    body = f"pid={os.getpid()} kept={len(_kept)}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
