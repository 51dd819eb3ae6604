"""WSGI entry point, named by settings.WSGI_APPLICATION (what `runshared` serves).

Outside Django's tooling it can be served directly:
``sharedsock exampleproject.wsgi:application``.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproject.settings")

application = get_wsgi_application()
