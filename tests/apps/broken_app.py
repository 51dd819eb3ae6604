"""An app whose import fails, as a typo in a real project would."""

raise ZeroDivisionError("broken on purpose")
