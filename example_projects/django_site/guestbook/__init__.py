"""A guestbook: one model, a form with CSRF, a JSON view, the admin, templates and static files."""
