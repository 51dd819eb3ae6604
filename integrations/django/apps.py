"""The app config Django finds through INSTALLED_APPS.

It imports nothing from the sharedsock engine: this module is imported by
every Django process of the project, and only ``runshared`` needs the engine.
"""

from django.apps import AppConfig


class SharedsockConfig(AppConfig):
    name = "sharedsock.integrations.django"
    label = "sharedsock"  # the default label, "django", would read as Django itself
    verbose_name = "sharedsock"
