"""Adapters that serve existing Flask and Django apps with sharedsock, installed as ``sharedsock.integrations``."""
