"""Large responses for the slow-reader tests: one list body, a streamed body, a sendfile body.

Every byte is ``BYTE`` so a client can check it got the whole body by counting.
"""

import tempfile

BYTE = b"s"


def _file_of(size: int):
    """A regular file, so file_wrapper can use sendfile; already unlinked, so closing it is cleanup."""
    f = tempfile.TemporaryFile()
    f.write(BYTE * size)
    f.seek(0)
    return f


def app(environ, start_response):
    path = environ["PATH_INFO"]
    size = int(environ.get("QUERY_STRING", "size=0").partition("=")[2] or 0)
    headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))]
    if path == "/list":
        start_response("200 OK", headers)
        return [BYTE * size]
    if path == "/stream":
        start_response("200 OK", headers)
        block = 1 << 16
        return (BYTE * min(block, size - at) for at in range(0, size, block))
    if path == "/file":
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](_file_of(size))
    start_response("404 Not Found", [("Content-Length", "0")])
    return []
