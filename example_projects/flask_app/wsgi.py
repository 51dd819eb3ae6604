"""For any WSGI server, and for `flask runshared` run in this directory without --app."""

from notesapp import create_app

app = create_app()
