"""An app whose workers exit 0.3 s after they boot while the file named by CRASHLOOP_FLAG exists."""

import os
import threading


def _exit_soon() -> None:
    os._exit(0)


if os.path.exists(os.environ.get("CRASHLOOP_FLAG", "")):
    threading.Timer(0.3, _exit_soon).start()


def app(environ, start_response):
    body = f"pid={os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
