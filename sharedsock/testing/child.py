"""The master's process for a live test server given an import string: a fresh interpreter,
started by ``sharedsock.testing.live``, that calls ``serve()`` with the options it was sent."""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    from ..errors import AppLoadError, ConfigError
    from ..runner import serve
    from .launch import CHILD_ENV

    spec = json.loads(os.environ.pop(CHILD_ENV))
    try:
        serve(spec["target"], **spec["options"])
    except (AppLoadError, ConfigError) as exc:
        print(f"sharedsock: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
