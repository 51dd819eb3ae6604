"""sharedsock integrations."""
