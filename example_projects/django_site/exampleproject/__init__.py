"""Project package of the sharedsock example site: settings, URLs, WSGI entry point."""
