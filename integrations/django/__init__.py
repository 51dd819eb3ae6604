"""Django integration: add ``"sharedsock.integrations.django"`` to INSTALLED_APPS for ``manage.py runshared``.

Kept empty on purpose: Django imports this package in every process that
loads the project (every ``manage.py`` command, every worker), so importing it
must cost nothing and must not touch the server engine.
"""
