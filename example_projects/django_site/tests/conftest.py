"""The guestbook's live tests: a real sharedsock server with two workers serves
``WSGI_APPLICATION`` on the test database (the sharedsock pytest plugin's ``live_server``).

The plugin creates the test database once per run, as ``manage.py test`` would; with this
project's SQLite it is a file (Django's default SQLite test database is in memory, which
other processes cannot open), shared by the workers and the test, and emptied after each test.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SITE = Path(__file__).resolve().parent.parent
if str(SITE) not in sys.path:
    sys.path.insert(0, str(SITE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproject.settings")
