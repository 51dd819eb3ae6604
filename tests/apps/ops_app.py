"""An app that reports the worker's identity and what the config-file hooks left for it."""

import json
import os


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/error":
        raise RuntimeError("boom from ops_app")
    try:
        os.setuid(0)
        regained = True
    except PermissionError:
        regained = False
    body = json.dumps({
        "pid": os.getpid(),
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
        "groups": sorted(os.getgroups()), "cwd": os.getcwd(), "regained_root": regained,
        "pre_request": environ.get("ops.pre_request"),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
