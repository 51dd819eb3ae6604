"""An app whose requests block until the test lets them go, for the load-shedding tests.

``SHED_DIR`` (set by the test) holds ``calls``, to which every call of the app appends a
line (``pid path?query``), so the test counts the app's calls and sees a request begin, and
the gates: ``GET /block?NAME`` reads one byte from the FIFO ``SHED_DIR/NAME`` (which the test
holds open) before it answers, so the test releases exactly the requests it means to;
``GET /spin?MS`` keeps the CPU busy for MS milliseconds of the thread's own time. Every
answer names the worker's pid, and the thread that ran the app.
"""

import os
import threading
import time


def app(environ, start_response):
    folder = os.environ["SHED_DIR"]
    path, query = environ["PATH_INFO"], environ["QUERY_STRING"]
    with open(os.path.join(folder, "calls"), "a") as calls:
        calls.write(f"{os.getpid()} {path}?{query}\n")
    if path == "/spin":  # on the CPU for QUERY milliseconds
        until = time.thread_time() + float(query) / 1000
        while time.thread_time() < until:
            pass
    if path == "/block":
        gate = os.open(os.path.join(folder, query), os.O_RDONLY)
        try:
            os.read(gate, 1)
        finally:
            os.close(gate)
    body = f"pid={os.getpid()} thread={threading.current_thread().name} {path}?{query}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
