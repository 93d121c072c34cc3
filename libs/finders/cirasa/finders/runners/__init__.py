"""Runnable apps: each is started as ``python -m cirasa.finders.runners.<module>`` in its job directory."""
