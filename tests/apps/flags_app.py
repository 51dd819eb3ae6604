"""Reports the interpreter options its worker runs with."""

import json
import sys


def app(environ, start_response):
    body = json.dumps({"warnoptions": sys.warnoptions, "xoptions": sys._xoptions,
                       "optimize": sys.flags.optimize}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
