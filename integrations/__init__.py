"""Adapters that serve existing Flask and Django apps with sharedsock.

Installed as ``sharedsock.integrations``.
"""
