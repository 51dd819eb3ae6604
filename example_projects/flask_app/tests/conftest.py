"""The notes app's live tests: every test talks HTTP to a real sharedsock server with two
workers (the sharedsock pytest plugin's ``live_server``), as production serves it.

``app`` follows pytest-flask's convention. It is an import string with the test's
configuration, not an app object, so the workers build the app themselves, as they do in
production, and the suite also runs under ``pytest --sharedsock-start-method spawn``
(a spawned worker cannot be handed an object). An app object works too, with fork.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))  # `notesapp`, for this process and the server's


@pytest.fixture
def app(tmp_path):
    config = {"DATA_DIR": str(tmp_path), "TESTING": True, "SECRET_KEY": "live-test-key"}
    return f"notesapp:create_app({config!r})"
